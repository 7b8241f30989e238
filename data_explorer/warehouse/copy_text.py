"""Rows as PostgreSQL COPY text: tab-separated, ``\\N`` for NULL, backslash escapes. Pure.

Formatting a whole batch up front lets it happen away from the thread that
talks to PostgreSQL, which then sends it in one piece.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

_SPECIAL = re.compile(r"[\\\n\r\t]")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    return _ESCAPES[match.group()]


def _field(value: object) -> str:
    if type(value) is str:
        # most values need no escape; the substring tests are much cheaper than a substitution
        if "\\" in value or "\n" in value or "\r" in value or "\t" in value:
            return _SPECIAL.sub(_escape, value)
        return value
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, (int, float)):
        return str(value)
    raise TypeError(f"cannot COPY a {type(value).__name__} value")


def copy_text(rows: Iterable[Sequence]) -> bytes:
    """The rows as COPY text in UTF-8; UnicodeEncodeError for text PostgreSQL cannot take (lone surrogates)."""
    return "".join(["\t".join([_field(v) for v in row]) + "\n" for row in rows]).encode()
