"""Hypothesis-generated variants of the hostile corpus: case changes, comments and odd
whitespace between tokens, wrapping in subqueries, CTEs, set operations and EXPLAIN. The
guard refuses every one, and every refusal says why."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hostile_sql import HOSTILE
from test_query_guard import PLACEHOLDERS, SCHEMA

from data_explorer.warehouse.sql_guard import SqlRejected, check_sql

STATEMENTS = [h.sql.format(**PLACEHOLDERS) for h in HOSTILE]
# Breaks between tokens that SQL treats as whitespace.
SEPARATORS = st.sampled_from([" ", "  ", "\n", "\t", " /* x */ ", " /**/ ", "\r\n", " -- c\n", " /* ; */ "])
# Quoted text and comments (a line comment with the line break that ends it) are kept whole.
_OUTSIDE_QUOTES = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|\$\$.*?\$\$|--[^\n]*(?:\n|$)|/\*.*?\*/)|(\s+)""", re.S)


def _rejoin(sql: str, separators: list[str]) -> str:
    """Replace each run of whitespace outside quotes with a separator drawn for it."""
    out, i = [], 0

    def swap(match: re.Match) -> str:
        nonlocal i
        if match.group(1):
            return match.group(1)
        sep = separators[i % len(separators)]
        i += 1
        return sep

    out.append(_OUTSIDE_QUOTES.sub(swap, sql))
    return "".join(out)


def _recase(sql: str, flips: list[bool]) -> str:
    """Change the case of unquoted words (quoted names and string literals keep theirs)."""
    parts = re.split(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|\$\$.*?\$\$|--[^\n]*(?:\n|$)|/\*.*?\*/)""", sql, flags=re.S)
    k = 0
    for n, part in enumerate(parts):
        if n % 2 == 0:
            chars = list(part)
            for j, c in enumerate(chars):
                if c.isalpha():
                    chars[j] = c.upper() if flips[k % len(flips)] else c.lower()
                    k += 1
            parts[n] = "".join(chars)
    return "".join(parts)


# Wrappers that keep what a statement does: any statement may be padded or terminated;
# a query (a read of another tenant, a denied function) keeps its meaning inside a
# subquery, a CTE or a set operation.
ANY_WRAPPER = ["{sql}", "{sql};", "  {sql}  ;  "]
QUERY_WRAPPERS = [
    "SELECT * FROM ({sql}) AS q",
    "WITH q AS ({sql}) SELECT * FROM q",
    "SELECT 1 AS a UNION ALL ({sql})",
    "({sql})",
    "SELECT * FROM (SELECT * FROM ({sql}) AS i) AS o",
]
_QUERY = re.compile(r"^\s*(select|with|values|table)\b", re.I)


def _wrappers(sql: str) -> list[str]:
    return ANY_WRAPPER + (QUERY_WRAPPERS if _QUERY.match(sql) else [])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    sql=st.sampled_from(STATEMENTS),
    separators=st.lists(SEPARATORS, min_size=1, max_size=6),
    flips=st.lists(st.booleans(), min_size=1, max_size=8),
)
def test_no_variant_of_a_hostile_statement_gets_through(data, sql, separators, flips):
    wrapper = data.draw(st.sampled_from(_wrappers(sql)), label="wrapper")
    variant = wrapper.format(sql=_rejoin(_recase(sql, flips), separators).strip().rstrip(";"))
    try:
        normalized = check_sql(variant, SCHEMA)
    except SqlRejected as refused:
        assert refused.rule and len(refused.reason) > 20, (variant, refused.reason)
        return
    raise AssertionError(f"the guard let through a variant of a hostile statement:\n{variant}\n-> {normalized}")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=400))
def test_arbitrary_text_is_refused_or_is_one_read_only_statement(text):
    try:
        normalized = check_sql(text, SCHEMA)
    except SqlRejected as refused:
        assert refused.rule and refused.reason
        return
    # whatever passes is a single query that the guard renders again identically
    assert check_sql(normalized, SCHEMA) == normalized
