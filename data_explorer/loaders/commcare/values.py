"""Checked conversions of untrusted API values into column values. Pure.

Each raises MalformedResponse naming the record and field, so a bad response
fails the run with a message that points at the culprit.
"""

from __future__ import annotations

from typing import Any

from data_explorer.loaders import json_codec
from data_explorer.loaders.errors import MalformedResponse


def text(value: Any, field: str, record: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise MalformedResponse(f"{record}: {field} is {type(value).__name__}, expected a string")


def json_text(value: Any, field: str, record: str, kind: type = dict) -> str:
    """JSON for a jsonb column; an absent or empty value becomes an empty object or list."""
    if value is None or value == "":
        value = kind()
    if not isinstance(value, kind):
        raise MalformedResponse(f"{record}: {field} is {type(value).__name__}, expected {'an object' if kind is dict else 'a list'}")
    return json_codec.dumps(value)


def boolean(value: Any, field: str, record: str, default: bool | None = None) -> bool:
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise MalformedResponse(f"{record}: {field} is {value!r}, expected true or false")
    return value
