"""User API v0.5 records to rows of the raw ``users`` table. Pure."""

from __future__ import annotations

from typing import Any

from data_explorer.loaders.commcare.values import json_text, text
from data_explorer.loaders.errors import MalformedResponse

USER_COLUMNS = (
    "user_id", "username", "first_name", "last_name", "email", "default_phone_number",
    "phone_numbers", "groups", "primary_location", "locations", "user_data",
)


def user_row(user: dict[str, Any]) -> tuple:
    user_id = user.get("id")
    if not isinstance(user_id, str) or not user_id:
        raise MalformedResponse(f"User API: a user has no id (keys: {', '.join(sorted(user)[:10])})")
    record = f"user {user_id}"
    return (
        user_id,
        text(user.get("username"), "username", record),
        text(user.get("first_name"), "first_name", record),
        text(user.get("last_name"), "last_name", record),
        text(user.get("email"), "email", record),
        text(user.get("default_phone_number"), "default_phone_number", record),
        json_text(user.get("phone_numbers"), "phone_numbers", record, list),
        json_text(user.get("groups"), "groups", record, list),
        text(user.get("primary_location"), "primary_location", record),
        json_text(user.get("locations"), "locations", record, list),
        json_text(user.get("user_data"), "user_data", record, dict),
    )
