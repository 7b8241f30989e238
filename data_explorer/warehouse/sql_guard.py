"""The SQL guard of the query path: one read-only query over one tenant's tables. Pure (sqlglot, postgres dialect).

``check_sql(sql, schema)`` returns the statement as it will be executed (the
guard's own rendering of what it checked, without comments or a trailing
semicolon) or raises ``SqlRejected`` saying what was wrong and what is allowed.

The guard gives agents clear reasons early. It is not the security boundary:
the session it runs in (a login role that can read only its own tenant, one
statement per read-only transaction on the extended protocol) is. So the guard
is strict where being wrong is cheap and says why.

Accepted: ``SELECT``, ``WITH ... SELECT`` (also ``RECURSIVE``), set operations
(``UNION``/``INTERSECT``/``EXCEPT``), ``VALUES``, ``TABLE name``, and
``EXPLAIN`` without ``ANALYZE`` of any of these.

Rejected, each with a reason of its own (``SqlRejected.rule`` names it):

- ``empty``, ``too_long``, ``nul``, ``syntax`` (sqlglot's reason),
  ``too_complex`` (over ``MAX_TOKENS`` tokens or ``MAX_NESTING`` parentheses deep, refused
  before parsing so that one statement's check stays a fraction of a second), ``multiple_statements``;
- ``statement``: anything that is not a query (writes, DDL, ``COPY``, ``SET``,
  ``RESET``, ``SHOW``, ``DISCARD``, transaction control, ``LISTEN``/``NOTIFY``,
  ``DO``, ``CALL``, ``PREPARE``/``EXECUTE``, ``VACUUM``, ``LOCK`` ...). ``SHOW`` is
  harmless but not needed: ``SELECT current_setting('name')`` does the same;
- ``explain_analyze`` (it runs the statement), ``explain_option``;
- ``write``: a data-modifying statement inside the query (``WITH x AS (DELETE ... RETURNING *) SELECT``);
- ``select_into`` (creates a table), ``locking`` (``FOR UPDATE``/``FOR SHARE``...),
  ``parameter`` (``$1``: there is nothing to bind), ``unicode_escape`` (``U&"..."``
  names, which PostgreSQL decodes and a checker reading the raw text would not);
- ``function``: a function of the deny list below, anywhere in the statement;
- ``schema``: a table, column or function qualified with any schema but the
  tenant's (``pg_catalog``, ``information_schema``, other tenants,
  ``<schema>__raw``, the control schema ...); ``database``: a database-qualified name;
- ``catalog``: an unqualified ``pg_*`` relation. PostgreSQL always searches
  ``pg_catalog`` first, so ``pg_authid`` resolves there even with the tenant's
  schema alone on the search path. Every relation of ``pg_catalog`` starts with ``pg_``.

Function policy (a deny list by prefix and name; names compared as PostgreSQL
folds them, quoted names exactly):

- every ``pg_*`` function except ``ALLOWED_PG_FUNCTIONS`` (value helpers such as
  ``pg_typeof``): the ``pg_`` namespace is server administration and
  introspection (files, signals, locks, replication, WAL, backups, statistics,
  settings, snapshots ...). Named categories give better reasons;
- large objects (``lo_*``, ``loread``, ``lowrite``), ``dblink*``;
- functions that run SQL text or read a table named in a string, out of the
  guard's sight: ``query_to_xml*``, ``cursor_to_xml*``, ``table_to_xml*``,
  ``schema_to_xml*``, ``database_to_xml*``, ``ts_stat``, ``ts_rewrite``;
- settings and session state: ``set_config``, ``setseed``; sequences
  (``nextval``, ``setval``, ``currval``, ``lastval``); transaction ids (``txid_*``);
- maintenance: ``brin_summarize_*``, ``brin_desummarize_range``,
  ``gin_clean_pending_list``, ``binary_upgrade_*``;
- server and client addresses: ``inet_server_addr``/``_port``, ``inet_client_addr``/``_port``;
- catalog lookups that reveal other tenants' names and comments by OID or by
  name: ``obj_description``, ``col_description``, ``shobj_description``,
  ``to_reg*``, ``has_*_privilege``, ``format_type``, ``row_security_active``
  (``pg_get_*`` fall under ``pg_*``), and any cast to a ``reg*`` type
  (``o::regclass``, ``regrole 'x'``), rule ``catalog``.

``current_setting`` is allowed: it only reads, and PostgreSQL itself refuses the
settings a plain role may not see (``data_directory``, ``config_file`` ...).
``version()`` and ``current_user`` are allowed too.

What the guard cannot bound (the executor and PostgreSQL do): run time
(``statement_timeout``), result size (row and byte caps), and the memory of a
single huge value (``repeat('x', 500000000)``).
"""

from __future__ import annotations

import re
from typing import Iterator

import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.tokens import Token, TokenType

MAX_SQL_CHARS = 100_000
# Parsing costs about a tenth of a millisecond per token, in the gateway's process: these bound one
# statement's check to a fraction of a second, whatever its text.
MAX_TOKENS = 3_000
MAX_NESTING = 64  # parentheses
_ROUGH_TOKEN = re.compile(r"\w+|[^\w\s]")

ALLOWED = (
    "Send one read-only query: SELECT, WITH ... SELECT, UNION/INTERSECT/EXCEPT, VALUES, or EXPLAIN "
    "without ANALYZE, over this tenant's tables by their plain names (list_tables shows them)."
)

ALLOWED_PG_FUNCTIONS = frozenset(
    {"pg_typeof", "pg_column_size", "pg_size_pretty", "pg_size_bytes", "pg_input_is_valid", "pg_input_error_info"}
)

# (name or prefix, is_prefix, why). First match wins; every other pg_* function is refused afterwards.
DENIED_FUNCTIONS: tuple[tuple[str, bool, str], ...] = (
    ("pg_read_file", False, "reads the server's files"),
    ("pg_read_binary_file", False, "reads the server's files"),
    ("pg_stat_file", False, "reads the server's files"),
    ("pg_ls_", True, "lists the server's directories"),
    ("pg_file_", True, "writes the server's files"),
    ("pg_logdir_ls", False, "lists the server's directories"),
    ("pg_current_logfile", False, "reads the server's log settings"),
    ("lo_", True, "uses large objects, which live outside the tenant's schema"),
    ("loread", False, "uses large objects, which live outside the tenant's schema"),
    ("lowrite", False, "uses large objects, which live outside the tenant's schema"),
    ("dblink", True, "connects to other databases"),
    ("pg_advisory", True, "takes advisory locks"),
    ("pg_try_advisory", True, "takes advisory locks"),
    ("set_config", False, "changes settings"),
    ("pg_reload_conf", False, "changes server settings"),
    ("pg_cancel_backend", False, "signals other sessions"),
    ("pg_terminate_backend", False, "signals other sessions"),
    ("pg_signal_backend", False, "signals other sessions"),
    ("pg_sleep", True, "sleeps, holding a session while doing nothing"),
    ("query_to_xml", True, "runs SQL given as text, out of these checks"),
    ("cursor_to_xml", True, "runs SQL given as text, out of these checks"),
    ("table_to_xml", True, "reads a table named in a string, out of these checks"),
    ("schema_to_xml", True, "reads tables named in a string, out of these checks"),
    ("database_to_xml", True, "reads every table of the database"),
    ("ts_stat", False, "runs SQL given as text, out of these checks"),
    ("ts_rewrite", False, "can run SQL given as text, out of these checks"),
    ("pg_notify", False, "sends notifications to other sessions"),
    ("txid_", True, "works with transaction ids, which a read-only query does not need"),
    ("pg_current_xact_id", True, "works with transaction ids, which a read-only query does not need"),
    ("pg_export_snapshot", False, "exports snapshots to other sessions"),
    ("pg_import_snapshot", False, "imports snapshots of other sessions"),
    ("pg_logical_", True, "controls logical replication"),
    ("pg_replication_", True, "controls replication"),
    ("pg_create_", True, "creates replication slots or restore points"),
    ("pg_drop_", True, "drops replication slots"),
    ("pg_copy_", True, "copies replication slots"),
    ("pg_wal_", True, "controls the write-ahead log"),
    ("pg_switch_wal", False, "controls the write-ahead log"),
    ("pg_promote", False, "promotes a standby"),
    ("pg_backup_", True, "controls backups"),
    ("pg_start_backup", False, "controls backups"),
    ("pg_stop_backup", False, "controls backups"),
    ("pg_stat_reset", True, "resets statistics"),
    ("nextval", False, "changes sequences"),
    ("setval", False, "changes sequences"),
    ("currval", False, "reads session state of sequences"),
    ("lastval", False, "reads session state of sequences"),
    ("setseed", False, "changes session state"),
    ("brin_summarize_", True, "runs index maintenance"),
    ("brin_desummarize_range", False, "runs index maintenance"),
    ("gin_clean_pending_list", False, "runs index maintenance"),
    ("binary_upgrade_", True, "is for pg_upgrade only"),
    ("inet_server_", True, "reveals the server's network address"),
    ("inet_client_", True, "reveals the gateway's network address"),
    ("obj_description", False, "reads the catalog's comments, other tenants' included"),
    ("col_description", False, "reads the catalog's comments, other tenants' included"),
    ("shobj_description", False, "reads the catalog's comments, other tenants' included"),
    ("to_reg", True, "looks names up in the catalog, other tenants' included"),
    ("has_", True, "checks privileges on objects named in the catalog, other tenants' included"),
    ("format_type", False, "names types from the catalog, other tenants' table types included"),
    ("row_security_active", False, "looks a table up in the catalog, other tenants' included"),
)
_PG_PREFIX_REASON = "is a server administration or introspection function (pg_*), not available to queries"

_QUERY_STARTS = {TokenType.SELECT, TokenType.WITH, TokenType.VALUES, TokenType.TABLE, TokenType.L_PAREN}

_STATEMENT_REASONS: tuple[tuple[frozenset[str], str], ...] = (
    (
        frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "UPSERT", "REPLACE"}),
        "writes data; queries are read-only",
    ),
    (
        frozenset({"CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "COMMENT", "SECURITY", "REINDEX", "CLUSTER",
                   "VACUUM", "ANALYZE", "ANALYSE", "REFRESH", "IMPORT", "LOCK", "REASSIGN", "CHECKPOINT", "LOAD"}),
        "changes the database, its objects or their locks; queries are read-only",
    ),
    (
        frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"}),
        "is transaction control; each query runs alone in a read-only transaction of its own",
    ),
    (frozenset({"SET", "RESET", "DISCARD"}), "changes session settings, which the gateway fixes"),
    (frozenset({"SHOW"}), "is not needed: use SELECT current_setting('name')"),
    (frozenset({"COPY"}), "is not available: a SELECT returns the rows"),
    (frozenset({"LISTEN", "UNLISTEN", "NOTIFY"}), "uses notifications, which are not available"),
    (
        frozenset({"DO", "CALL", "PREPARE", "EXECUTE", "DEALLOCATE", "DECLARE", "FETCH", "MOVE", "CLOSE"}),
        "runs code or keeps state in the session; send the query itself",
    ),
)

_EXPLAIN_OPTIONS = {"VERBOSE", "COSTS", "SETTINGS", "BUFFERS", "WAL", "TIMING", "SUMMARY", "FORMAT", "GENERIC_PLAN"}
_EXPLAIN_BOOLEANS = {"TRUE", "FALSE", "ON", "OFF", "1", "0"}
_EXPLAIN_FORMATS = {"TEXT", "XML", "JSON", "YAML"}

# Statements, or parts of one, that a read-only query never contains.
_WRITE_NODES: tuple[tuple[type[exp.Expression], str], ...] = (
    (exp.Insert, "INSERT"), (exp.Update, "UPDATE"), (exp.Delete, "DELETE"), (exp.Merge, "MERGE"),
    (exp.Create, "CREATE"), (exp.Drop, "DROP"), (exp.Alter, "ALTER"), (exp.TruncateTable, "TRUNCATE"),
    (exp.Copy, "COPY"), (exp.Grant, "GRANT"), (exp.Revoke, "REVOKE"), (exp.Comment, "COMMENT"),
    (exp.Set, "SET"), (exp.Transaction, "BEGIN"), (exp.Commit, "COMMIT"), (exp.Rollback, "ROLLBACK"),
    (exp.Command, "a command"), (exp.Analyze, "ANALYZE"),
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TABLES_HINT = "use list_tables and describe_table to see the tenant's tables and columns"


class SqlRejected(ValueError):
    """The SQL was refused: ``reason`` says why and what is allowed; ``rule`` names the check."""

    def __init__(self, reason: str, rule: str):
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


def check_sql(sql: str, schema: str) -> str:
    """The single read-only statement to execute, normalized, or raise SqlRejected."""
    if not isinstance(sql, str):
        raise SqlRejected("The SQL must be text. " + ALLOWED, "syntax")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRejected(f"The SQL is {len(sql)} characters long; at most {MAX_SQL_CHARS} are allowed.", "too_long")
    if "\x00" in sql:
        raise SqlRejected("The SQL contains a NUL character, which PostgreSQL does not accept.", "nul")
    try:
        return _check(sql, schema, explain_allowed=True)
    except SqlRejected:
        raise
    except RecursionError:
        raise SqlRejected(
            "The SQL is nested too deeply to check; simplify it (use WITH for intermediate steps).", "too_complex"
        ) from None
    except Exception as exc:  # a parser failure we did not foresee: refuse rather than let it through
        raise SqlRejected(f"The SQL could not be checked ({type(exc).__name__}); simplify it. {ALLOWED}", "syntax") from None


def _check(sql: str, schema: str, *, explain_allowed: bool) -> str:
    # a quick count first (it splits more finely than the tokenizer): tokenizing is a cost of its own
    rough = sum(1 for _ in _ROUGH_TOKEN.finditer(sql))
    if rough > 4 * MAX_TOKENS:
        _too_many(f"over {4 * MAX_TOKENS:,}")
    tokens = _tokens(sql)
    _bound(tokens)
    statements = _split(tokens)
    if not statements:
        raise SqlRejected("The SQL is empty (only whitespace, comments or semicolons). " + ALLOWED, "empty")
    if len(statements) > 1:
        raise SqlRejected(
            f"The SQL holds {len(statements)} statements; send exactly one (a trailing semicolon is fine). " + ALLOWED,
            "multiple_statements",
        )
    first = statements[0][0]
    keyword = first.text.upper()
    if keyword == "EXPLAIN":
        if not explain_allowed:
            raise SqlRejected("EXPLAIN cannot explain another EXPLAIN. " + ALLOWED, "statement")
        return _check_explain(sql[first.end + 1 :], schema)
    if first.token_type not in _QUERY_STARTS:
        raise SqlRejected(f"{_statement_name(statements[0])} {_statement_reason(keyword)}. {ALLOWED}", "statement")
    _refuse_unicode_escapes(statements[0])
    tree = _parse(sql)
    _check_tree(tree, schema)
    normalized = tree.sql(dialect="postgres", comments=False, normalize_functions=False)
    # What runs is the guard's rendering, checked again, so nothing the parser
    # and PostgreSQL read differently slips through.
    _check_tree(_parse(normalized), schema)
    return normalized


def _too_many(count: str) -> None:
    raise SqlRejected(
        f"The SQL has {count} tokens; at most {MAX_TOKENS:,} are checked. Simplify it "
        "(use WITH for intermediate steps, IN (SELECT ...) rather than long lists of values).",
        "too_complex",
    )


def _bound(tokens: list[Token]) -> None:
    """Refuse a statement too large or too deeply nested to check in a bounded time, before parsing it."""
    if len(tokens) > MAX_TOKENS:
        _too_many(f"{len(tokens):,}")
    depth = deepest = 0
    for token in tokens:
        if token.token_type == TokenType.L_PAREN:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
    if deepest > MAX_NESTING:
        raise SqlRejected(
            f"The SQL nests parentheses {deepest} deep; at most {MAX_NESTING} are checked. Simplify it "
            "(use WITH for intermediate steps).",
            "too_complex",
        )


def _tokens(sql: str) -> list[Token]:
    try:
        return Postgres().tokenize(sql)
    except TokenError as exc:
        raise SqlRejected(
            f"The SQL could not be parsed: {_clean(str(exc))} (an unterminated string or quoted name?). {ALLOWED}", "syntax"
        ) from None


def _split(tokens: list[Token]) -> list[list[Token]]:
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def _statement_name(tokens: list[Token]) -> str:
    return tokens[0].text.upper() if re.fullmatch(r"[A-Za-z_]+", tokens[0].text) else repr(tokens[0].text)


def _statement_reason(keyword: str) -> str:
    for keywords, reason in _STATEMENT_REASONS:
        if keyword in keywords:
            return reason
    return "is not a query"


def _refuse_unicode_escapes(tokens: list[Token]) -> None:
    for before, amp, after in zip(tokens, tokens[1:], tokens[2:]):
        if (
            before.text.upper() == "U" and amp.token_type == TokenType.AMP
            and before.end + 1 == amp.start and amp.end + 1 == after.start
        ):
            raise SqlRejected('Unicode-escaped names (U&"...") are not supported; write the name plainly.', "unicode_escape")


def _parse(sql: str) -> exp.Expression:
    try:
        trees = [t for t in sqlglot.parse(sql, read="postgres") if t is not None and not isinstance(t, exp.Semicolon)]
    except ParseError as exc:
        raise SqlRejected(f"The SQL could not be parsed: {_describe_parse_error(exc)}. {ALLOWED}", "syntax") from None
    except SqlglotError as exc:
        raise SqlRejected(f"The SQL could not be parsed: {_clean(str(exc))}. {ALLOWED}", "syntax") from None
    if len(trees) != 1:
        raise SqlRejected(f"The SQL holds {len(trees)} statements; send exactly one. {ALLOWED}", "multiple_statements")
    return trees[0]


def _describe_parse_error(exc: ParseError) -> str:
    if not exc.errors:
        return _clean(str(exc))
    error = exc.errors[0]
    token = r"<Token token_type: TokenType\.(\w+), text: ([^,]*),.*?>"  # sqlglot's token repr: keep its text
    description = re.sub(token, r"\2", str(error.get("description", "")))
    where = f" at line {error.get('line')}, column {error.get('col')}"
    near = error.get("highlight")
    return _clean(f"{description}{where}" + (f" near {near!r}" if near else ""))


def _clean(text: str) -> str:
    return _ANSI.sub("", text).strip().splitlines()[0] if text.strip() else "unknown error"


def _check_explain(rest: str, schema: str) -> str:
    tokens = _tokens(rest)
    options: list[str] = []
    i = 0
    if tokens and tokens[0].token_type == TokenType.L_PAREN:
        i = 1
        while True:
            if i >= len(tokens):
                raise SqlRejected("EXPLAIN options are not closed with ')'. " + ALLOWED, "syntax")
            name = tokens[i].text.upper()
            if name in ("ANALYZE", "ANALYSE"):
                raise _explain_analyze()
            if name not in _EXPLAIN_OPTIONS:
                raise SqlRejected(
                    f"EXPLAIN option {tokens[i].text!r} is not allowed; use {', '.join(sorted(_EXPLAIN_OPTIONS))}.",
                    "explain_option",
                )
            i += 1
            value = None
            if i < len(tokens) and tokens[i].token_type not in (TokenType.COMMA, TokenType.R_PAREN):
                value = tokens[i].text.upper()
                allowed = _EXPLAIN_FORMATS if name == "FORMAT" else _EXPLAIN_BOOLEANS
                if value not in allowed:
                    raise SqlRejected(
                        f"EXPLAIN option {name} takes one of {', '.join(sorted(allowed))}, not {tokens[i].text!r}.",
                        "explain_option",
                    )
                i += 1
            elif name == "FORMAT":
                raise SqlRejected("EXPLAIN option FORMAT needs TEXT, XML, JSON or YAML.", "explain_option")
            options.append(name if value is None else f"{name} {value}")
            if i < len(tokens) and tokens[i].token_type == TokenType.COMMA:
                i += 1
                continue
            if i < len(tokens) and tokens[i].token_type == TokenType.R_PAREN:
                i += 1
                break
            raise SqlRejected("EXPLAIN options must be separated by commas and closed with ')'.", "syntax")
    else:
        while i < len(tokens) and tokens[i].text.upper() in ("ANALYZE", "ANALYSE", "VERBOSE"):
            if tokens[i].text.upper() != "VERBOSE":
                raise _explain_analyze()
            options.append("VERBOSE")
            i += 1
    if i >= len(tokens) or tokens[i].token_type == TokenType.SEMICOLON:
        raise SqlRejected("EXPLAIN needs the query to explain after it. " + ALLOWED, "syntax")
    inner = _check(rest[tokens[i].start :], schema, explain_allowed=False)
    return f"EXPLAIN ({', '.join(options)}) {inner}" if options else f"EXPLAIN {inner}"


def _explain_analyze() -> SqlRejected:
    return SqlRejected("EXPLAIN ANALYZE runs the statement; use EXPLAIN without ANALYZE to see the plan.", "explain_analyze")


def _effective(identifier: exp.Expression | str | None) -> str | None:
    """A name as PostgreSQL reads it: unquoted names fold to lower case."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        return identifier.lower()
    if isinstance(identifier, exp.Identifier):
        return identifier.this if identifier.quoted else identifier.this.lower()
    return identifier.sql(dialect="postgres").lower()


def _check_tree(tree: exp.Expression, schema: str) -> None:
    root = tree
    while isinstance(root, (exp.Subquery, exp.Paren)):
        root = root.this
    if isinstance(root, exp.Command):
        raise SqlRejected(f"The SQL uses syntax the checker cannot read as a query. {ALLOWED}", "syntax")
    for cls, name in _WRITE_NODES:
        if isinstance(root, cls):
            raise SqlRejected(f"{name} {_statement_reason(name)}. {ALLOWED}", "statement")
    if not isinstance(root, (exp.Select, exp.SetOperation, exp.Values)):
        raise SqlRejected(f"This is not a query. {ALLOWED}", "statement")
    for node in _walk(tree):
        _check_node(node, schema)


def _walk(tree: exp.Expression) -> Iterator[exp.Expression]:
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in node.iter_expressions():
            stack.append(child)


def _check_node(node: exp.Expression, schema: str) -> None:
    for cls, name in _WRITE_NODES:
        if isinstance(node, cls):
            raise SqlRejected(
                f"{name} inside the query (for example in a WITH clause) {_statement_reason(name)}. {ALLOWED}", "write"
            )
    if isinstance(node, exp.Into):
        raise SqlRejected("SELECT INTO creates a table; queries are read-only. Drop the INTO clause.", "select_into")
    if isinstance(node, exp.Lock):
        raise SqlRejected(
            "FOR UPDATE / FOR SHARE lock rows, which a read-only query cannot do. Drop the locking clause.", "locking"
        )
    if isinstance(node, exp.Placeholder) or (isinstance(node, exp.Parameter) and isinstance(node.this, exp.Literal)):
        raise SqlRejected("Parameters (such as $1) are not supported: write the values into the SQL.", "parameter")
    if isinstance(node, exp.Table):
        _check_qualified(node, schema, "table")
        if not node.args.get("db") and isinstance(node.this, exp.Identifier):
            name = _effective(node.this)
            if name and name.startswith("pg_"):
                raise SqlRejected(
                    f"{name} is a system catalog, not one of the tenant's tables; {_TABLES_HINT} "
                    f"(a tenant table named pg_... must be written {schema}.{name}).",
                    "catalog",
                )
    elif isinstance(node, exp.Column):
        _check_qualified(node, schema, "column")
    elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
        qualifier = node.this
        name = _effective(qualifier) if isinstance(qualifier, exp.Identifier) else None
        if name != schema:
            raise SqlRejected(
                f"{node.sql(dialect='postgres')} calls a function qualified with {qualifier.sql(dialect='postgres')}; "
                "call functions by their plain names.",
                "schema",
            )
    if isinstance(node, exp.DataType):
        type_name = node.this.value if isinstance(node.this, exp.DataType.Type) else str(node.this)
        if type_name.lower().startswith("reg"):
            raise SqlRejected(
                f"A cast to {type_name.lower()} turns numbers or text into catalog names, other tenants' included; "
                f"{_TABLES_HINT}.",
                "catalog",
            )
    if isinstance(node, exp.Func):
        for name in _function_names(node):
            reason = _denied(name)
            if reason:
                raise SqlRejected(
                    f"Function {name}() {reason}. Ordinary functions (aggregates, window, date, text, json, math) are fine.",
                    "function",
                )


def _check_qualified(node: exp.Table | exp.Column, schema: str, kind: str) -> None:
    if node.args.get("catalog"):
        raise SqlRejected(
            f"{node.sql(dialect='postgres')} names a database; refer to the tenant's tables by their plain names.",
            "database",
        )
    db = _effective(node.args.get("db"))
    if db is not None and db != schema:
        system = db in ("pg_catalog", "information_schema") or db.startswith("pg_")
        where = "the system catalogs" if system else "another schema"
        raise SqlRejected(
            f"{node.sql(dialect='postgres')} refers to {where} ({db}); only this tenant's tables are available, "
            f"by their plain names; {_TABLES_HINT}.",
            "schema",
        )


def _function_names(node: exp.Func) -> set[str]:
    if isinstance(node, exp.Anonymous):
        name = _effective(node.this)
        return {name} if name else set()
    return {n.lower() for n in type(node).sql_names()}


def _denied(name: str) -> str | None:
    for pattern, is_prefix, reason in DENIED_FUNCTIONS:
        if name == pattern or (is_prefix and name.startswith(pattern)):
            return reason
    if name.startswith("pg_") and name not in ALLOWED_PG_FUNCTIONS:
        return _PG_PREFIX_REASON
    return None
