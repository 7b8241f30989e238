"""Making text storable in PostgreSQL. Pure.

PostgreSQL cannot store NUL (in text or jsonb) nor unpaired UTF-16 surrogates
(which JSON escapes like ``\\ud800`` can produce). Such characters are replaced
with U+FFFD and counted, so one odd value neither fails every run nor is
silently dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Sequence

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def any_unstorable(texts: Iterable[str]) -> bool:
    """Whether any of the texts holds a character ``storable`` would replace: one scan in compiled code."""
    return _UNSTORABLE.search("".join(texts)) is not None


def storable(value: Any) -> tuple[Any, int]:
    """The value (str, or dicts and lists of them) with unstorable characters replaced; and how many."""
    if isinstance(value, str):
        return _UNSTORABLE.subn(REPLACEMENT, value)
    if isinstance(value, dict):
        out, total = {}, 0
        for key, item in value.items():
            key, n = storable(key)
            item, m = storable(item)
            out[key] = item
            total += n + m
        return out, total
    if isinstance(value, list):
        out_list, total = [], 0
        for item in value:
            item, n = storable(item)
            out_list.append(item)
            total += n
        return out_list, total
    return value, 0


def storable_rows(rows: Sequence[Sequence], types: Sequence[str]) -> tuple[list[tuple], int]:
    """Rows with every text and jsonb value made storable; and how many characters were replaced."""
    out, total = [], 0
    for row in rows:
        fixed = []
        for value, kind in zip(row, types):
            if isinstance(value, str):
                if kind == "jsonb":
                    parsed, n = storable(json.loads(value))
                    value = json.dumps(parsed, ensure_ascii=False)
                else:
                    value, n = storable(value)
                total += n
            fixed.append(value)
        out.append(tuple(fixed))
    return out, total
