"""Timestamps as CommCare sends them: with or without ``Z``, with or without microseconds."""

from __future__ import annotations

from datetime import datetime, timezone

from data_explorer.loaders.errors import MalformedResponse

_fromisoformat = datetime.fromisoformat


def parse_timestamp(value: object, field: str, record: str) -> datetime:
    """A timezone-aware datetime, or MalformedResponse naming the field and record."""
    try:  # a few of these for every record: the checks are left to fromisoformat, which makes them anyway
        parsed = _fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _malformed(value, field, record) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def optional_timestamp(value: object, field: str, record: str) -> datetime | None:
    """The timestamp, as parse_timestamp gives it; None when empty."""
    if value is None or value == "":
        return None
    return parse_timestamp(value, field, record)


def _malformed(value: object, field: str, record: str) -> MalformedResponse:
    if not isinstance(value, str) or not value:
        return MalformedResponse(f"{record}: {field} is {value!r}, expected a timestamp")
    return MalformedResponse(f"{record}: {field} is {value!r}, not a timestamp")


def format_for_filter(moment: datetime) -> str:
    """UTC, no offset, microseconds: the form CommCare's date filters accept."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
