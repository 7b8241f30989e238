"""JSON in and out of the loaders: orjson for speed, the standard library for what orjson refuses.

Decoding and re-encoding each record is most of the loader's own CPU time, and
orjson does both several times faster. It refuses a few things the standard
library takes: lone UTF-16 surrogates (``\\ud800``, which ``storable`` later
replaces) and integers beyond 64 bits when encoding; those fall back to the
standard library, so the results are the same. NaN and infinities are not
JSON and PostgreSQL's jsonb cannot hold them: they are refused on decoding.
One difference remains: orjson decodes an integer beyond the 64-bit range as a
float (CommCare sends form and case values as strings, so this does not arise
in practice).
"""

from __future__ import annotations

import json
import math
from typing import Any

try:
    import orjson
except ImportError:  # the standard library alone gives the same results, only slower
    orjson = None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def _stdlib_loads(data: bytes | str) -> Any:
    return json.loads(data, parse_constant=_not_json, parse_float=_finite)


def loads(data: bytes | str) -> Any:
    """Parse JSON; ValueError (json.JSONDecodeError with msg and pos when it is a syntax error) if it is not."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # maybe only refused by orjson: the standard library decides, and words the error
    return _stdlib_loads(data)


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is (jsonb does not keep the spacing anyway)."""
    if orjson is not None:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # lone surrogates, integers beyond 64 bits
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
