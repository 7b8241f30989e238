"""User API v0.5 records to rows of the raw ``users`` table. Pure.

Three lists make the project space's users (``corehq/apps/api/resources/v0_1.py``, ``v0_5.py``):
``/user/`` lists the active mobile workers only, ``/user/?archived=true`` only the deactivated
ones, and ``/web-user/`` the web users (with their role in the space, and no groups, locations or
custom data). Web users can submit forms and own cases too (Web Apps), so forms and cases join to
all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data_explorer.loaders.commcare.values import json_text, text
from data_explorer.loaders.errors import MalformedResponse

USER_COLUMNS = (
    "user_id", "username", "first_name", "last_name", "email", "default_phone_number",
    "phone_numbers", "groups", "primary_location", "locations", "user_data", "user_type", "is_active", "role",
)


@dataclass(frozen=True)
class UserList:
    """One list of users: where it is read, what it is called in messages, and what its users are."""

    path: str  # after /a/<domain>/api/v0.5/; a query here is kept by every page's meta.next
    what: str
    user_type: str  # mobile or web
    is_active: bool


# Read in this order; a user served by two lists (a worker deactivated or reactivated between the
# reads) is kept as the later list shows them, since the later read saw the change (see sources.py).
USER_LISTS = (
    UserList("user/", "User API", "mobile", True),
    UserList("user/?archived=true", "User API (deactivated workers)", "mobile", False),
    UserList("web-user/", "Web User API", "web", True),
)


def user_row(user: dict[str, Any], listed: UserList) -> tuple:
    user_id = user.get("id")
    if not isinstance(user_id, str) or not user_id:
        raise MalformedResponse(f"{listed.what}: a user has no id (keys: {', '.join(sorted(user)[:10])})")
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
        listed.user_type,
        listed.is_active,
        text(user.get("role"), "role", record) if listed.user_type == "web" else None,
    )
