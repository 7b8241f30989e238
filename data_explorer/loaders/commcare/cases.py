"""Case API v2 records to rows of the raw ``cases`` table. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from data_explorer.loaders.commcare.values import boolean, json_text, text
from data_explorer.loaders.errors import MalformedResponse
from data_explorer.loaders.timestamps import optional_timestamp, parse_timestamp

CASE_COLUMNS = (
    "case_id", "case_type", "case_name", "external_id", "owner_id", "date_opened", "last_modified",
    "server_last_modified", "indexed_on", "closed", "date_closed", "properties", "indices",
)
CASE_INDEXED_ON = CASE_COLUMNS.index("indexed_on")  # a row's place of the incremental cursor's instant, parsed


def case_key(case: dict[str, Any]) -> tuple[datetime, str]:
    """(indexed_on, case_id) of a record, checked: the incremental cursor's position."""
    case_id = case.get("case_id")
    if not isinstance(case_id, str) or not case_id:
        raise MalformedResponse(f"Case API v2: a case has no case_id (keys: {', '.join(sorted(case)[:10])})")
    return parse_timestamp(case.get("indexed_on"), "indexed_on", f"case {case_id}"), case_id


def case_row(case: dict[str, Any]) -> tuple:
    indexed_on, case_id = case_key(case)
    record = f"case {case_id}"
    return (
        case_id,
        text(case.get("case_type"), "case_type", record),
        text(case.get("case_name"), "case_name", record),
        text(case.get("external_id"), "external_id", record),
        text(case.get("owner_id"), "owner_id", record),
        optional_timestamp(case.get("date_opened"), "date_opened", record),
        optional_timestamp(case.get("last_modified"), "last_modified", record),
        optional_timestamp(case.get("server_last_modified"), "server_last_modified", record),
        indexed_on,
        boolean(case.get("closed"), "closed", record),
        optional_timestamp(case.get("date_closed"), "date_closed", record),
        json_text(case.get("properties"), "properties", record),
        json_text(case.get("indices"), "indices", record),
    )
