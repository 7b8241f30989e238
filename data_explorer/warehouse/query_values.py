"""Values of the query path, as JSON can carry them.

NUMERIC becomes an int when integral, else a float (more than 15 significant
digits are rounded: cast to text in SQL to keep them); NaN and infinities become
strings; timestamps, dates and times ISO 8601 strings (PostgreSQL's own text where
Python cannot hold the value, such as ``infinity``); intervals PostgreSQL's text;
UUIDs strings; bytea ``\\x``-prefixed hex; arrays lists; json/jsonb as parsed;
anything else its text.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time as dtime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg import pq
from psycopg.types.datetime import DateLoader, TimeLoader, TimestampLoader, TimestamptzLoader, TimetzLoader
from psycopg.types.string import TextLoader

_TEXT = pq.Format.TEXT


def json_safe(value: Any) -> Any:
    """A value as JSON can carry it (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
        if value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)


def _text_fallback(base: type) -> type:
    """A date/time loader that returns PostgreSQL's text where Python cannot hold the value (infinity, year 10000)."""

    def load(self, data):
        try:
            return base.load(self, data)
        except (psycopg.DataError, ValueError, OverflowError):
            return bytes(data).decode("utf-8", "replace")

    return type(f"Safe{base.__name__}", (base,), {"load": load})


LOADERS = {
    "date": _text_fallback(DateLoader),
    "time": _text_fallback(TimeLoader),
    "timetz": _text_fallback(TimetzLoader),
    "timestamp": _text_fallback(TimestampLoader),
    "timestamptz": _text_fallback(TimestamptzLoader),
    "interval": TextLoader,  # a timedelta cannot hold months
}


def value_loader(conn: psycopg.AsyncConnection, oid: int):
    cls = conn.adapters.get_loader(oid, _TEXT) or conn.adapters.get_loader(0, _TEXT)
    return cls(oid, conn)


def load_value(loader, data: bytes | None, encoding: str) -> Any:
    if data is None:
        return None
    try:
        return json_safe(loader.load(data))
    except Exception:  # noqa: BLE001 - a value Python cannot load still has PostgreSQL's text
        return bytes(data).decode(encoding, "replace")


def registry_name(conn: psycopg.AsyncConnection, oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info else f"oid {oid}"
