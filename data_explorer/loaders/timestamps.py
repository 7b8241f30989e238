"""Timestamps as CommCare sends them: with or without ``Z``, with or without microseconds."""

from __future__ import annotations

from datetime import datetime, timezone

from data_explorer.loaders.errors import MalformedResponse


def parse_timestamp(value: object, field: str, record: str) -> datetime:
    """A timezone-aware datetime, or MalformedResponse naming the field and record."""
    if not isinstance(value, str) or not value:
        raise MalformedResponse(f"{record}: {field} is {value!r}, expected a timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedResponse(f"{record}: {field} is {value!r}, not a timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def optional_timestamp(value: object, field: str, record: str) -> datetime | None:
    """The timestamp, as parse_timestamp gives it; None when empty."""
    if value is None or value == "":
        return None
    return parse_timestamp(value, field, record)


def format_for_filter(moment: datetime) -> str:
    """UTC, no offset, microseconds: the form CommCare's date filters accept."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
