"""The people of one project space: mobile workers (User API v0.5) and web users (Web User API v0.5).

Mobile worker ``j`` belongs to group ``j % 3`` and location ``j % 4``. The
first ``users`` workers are active; the ``deactivated_users`` after them are
deactivated, and so is a worker ``deactivate``d later: the User API lists a
deactivated worker only with ``archived=true``, and never both ways at once.
Web users are the configured API users who are members of the space plus
``web_users`` synthetic ones; all of them are listed by ``/web-user/``.

Mobile workers and the synthetic web users own the cases (one owner per
family) and submit the forms, deactivated or not: CommCare keeps the cases and
forms of a worker deactivated after the work, and a web user submits through
Web Apps. The API users only call the APIs.
"""

from __future__ import annotations

import json
import unicodedata

from data_explorer.simulator.config import DomainConfig, SimulatorConfig, WebUser
from data_explorer.simulator.pools import FIRST_NAMES, RAW, SURNAMES, UTF8, VILLAGES, Text
from data_explorer.simulator.synth import DAY_US, fmt_ts, make_tag, mix64, record_id, stable_hash

GROUPS = 3
LOCATIONS = 4
# what a role lets its web users do, as the Web User API shows ``permissions`` (a part of CommCare's set)
ROLES = {
    "Admin": {"access_api": True, "edit_commcare_users": True, "edit_data": True, "edit_web_users": True,
              "view_reports": True},
    "Field Supervisor": {"access_api": False, "edit_commcare_users": True, "edit_data": True,
                         "edit_web_users": False, "view_reports": True},
    "Report Viewer": {"access_api": False, "edit_commcare_users": False, "edit_data": False,
                      "edit_web_users": False, "view_reports": True},
}
SYNTHETIC_ROLES = ("Field Supervisor", "Report Viewer")


def api_user_ids(config: SimulatorConfig) -> dict[str, str]:
    """The id of each configured API user (a web user), the same in every project space."""
    tag = make_tag(config.seed, "", "web-user")
    return {u.username: record_id(tag, k) for k, u in enumerate(config.users)}


def _slug(name: str) -> str:
    ascii_only = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(c for c in ascii_only.lower() if c.isalnum()) or "user"


class UserSpace:
    def __init__(self, seed: int, domain: DomainConfig, members: list[tuple[str, WebUser]], now: int):
        self.domain = domain.name
        self.active = domain.users
        self.count = domain.users + domain.deactivated_users  # mobile workers
        self.tag = make_tag(seed, self.domain, "user")
        self.salt = stable_hash(seed, self.domain, "user")
        self.now = now
        self.group_ids = [record_id(make_tag(seed, self.domain, "group"), g) for g in range(GROUPS)]
        self.location_ids = [record_id(make_tag(seed, self.domain, "location"), k) for k in range(LOCATIONS)]
        self.ids = [record_id(self.tag, j) for j in range(self.count)]
        self.usernames = [self._username(j) for j in range(self.count)]
        self.inactive = set(range(self.active, self.count))
        web_tag = make_tag(seed, self.domain, "web-user")
        synthetic = [self._synthetic_web_user(record_id(web_tag, k), k) for k in range(domain.web_users)]
        callers = [_web_user(uid, u.username, u.first_name, u.last_name, u.email_address, "Admin") for uid, u in members]
        self.web = sorted(callers + synthetic, key=lambda w: w["username"])
        # who owns cases and submits forms: the mobile workers, then the synthetic web users
        self.owners = list(zip(self.ids, self.usernames)) + [(w["id"], w["username"]) for w in synthetic]
        self._index = {user_id: j for j, user_id in enumerate(self.ids)}

    # --- mobile workers ---------------------------------------------------------------------

    def _names(self, j: int) -> tuple[Text, Text]:
        h = mix64(self.salt ^ j)
        return FIRST_NAMES[h % len(FIRST_NAMES)], SURNAMES[(h >> 16) % len(SURNAMES)]

    def _username(self, j: int) -> str:
        first, last = self._names(j)
        return f"{_slug(first[RAW])}.{_slug(last[RAW])}{j + 1}@{self.domain}.commcarehq.org"

    def archived(self, j: int) -> bool:
        return j in self.inactive

    def deactivate(self, user_id: str) -> bool:
        """Deactivate a mobile worker now (as an admin may while a client reads the lists); False if unknown."""
        j = self._index.get(user_id)
        if j is None:
            return False
        self.inactive.add(j)
        return True

    def group_of(self, j: int) -> str:
        return self.group_ids[j % GROUPS]

    def index_of(self, user_id: str) -> int | None:
        return self._index.get(user_id)

    def select(self, group: str | None, archived: bool) -> list[int]:
        return [
            j for j in range(self.count)
            if self.archived(j) == archived and (group is None or self.group_of(j) == group)
        ]

    def render(self, j: int, extras: bool) -> str:
        """One user as JSON text (raw UTF-8, keys sorted as tastypie sorts them)."""
        first, last = self._names(j)
        h = mix64(self.salt ^ (j + 0x5151))
        phone = f"+2547{h % 100_000_000:08d}"
        location = self.location_ids[j % LOCATIONS]
        village = VILLAGES[(h >> 30) % len(VILLAGES)]
        extra = ""
        if extras:
            last_submission = fmt_ts(self.now - ((h >> 20) % 30) * DAY_US)
            extra = (
                f'"extras": {{"completed_last_30": {(h >> 8) % 40}, "last_submission": "{last_submission}", '
                f'"submitted_last_30": {(h >> 14) % 90}}}, '
            )
        return (
            f'{{"default_phone_number": "{phone}", "email": "", {extra}"first_name": "{first[UTF8]}", '
            f'"groups": ["{self.group_of(j)}"], "id": "{self.ids[j]}", "last_name": "{last[UTF8]}", '
            f'"locations": ["{location}"], "phone_numbers": ["{phone}"], "primary_location": "{location}", '
            f'"resource_uri": "/a/{self.domain}/api/v0.5/user/{self.ids[j]}/", '
            f'"user_data": {{"commcare_project": "{self.domain}", "role": "CHW", "village": "{village[UTF8]}"}}, '
            f'"username": "{self.usernames[j]}"}}'
        )

    # --- web users --------------------------------------------------------------------------

    def _synthetic_web_user(self, user_id: str, k: int) -> dict:
        h = mix64(self.salt ^ (0x3EB0000 + k))
        first, last = FIRST_NAMES[h % len(FIRST_NAMES)], SURNAMES[(h >> 16) % len(SURNAMES)]
        username = f"{_slug(first[RAW])}.{_slug(last[RAW])}.{k + 1}@example.org"
        role = SYNTHETIC_ROLES[k % len(SYNTHETIC_ROLES)]
        return _web_user(user_id, username, first[RAW], last[RAW], username, role)

    def web_users(self, username: str | None) -> list[dict]:
        return [w for w in self.web if username is None or w["username"] == username]

    def web_user(self, user_id: str) -> dict | None:
        return next((w for w in self.web if w["id"] == user_id), None)

    def render_web(self, user: dict) -> str:
        shown = {**user, "resource_uri": f"/a/{self.domain}/api/v0.5/web-user/{user['id']}/"}
        return json.dumps(shown, ensure_ascii=False, sort_keys=True)


def _web_user(user_id: str, username: str, first: str, last: str, email: str, role: str) -> dict:
    """A web user as the Web User API shows one: no groups, locations or user data, but a role."""
    return {
        "default_phone_number": None, "email": email, "first_name": first, "id": user_id,
        "is_admin": role == "Admin", "last_name": last, "permissions": dict(ROLES[role]), "phone_numbers": [],
        "role": role, "username": username,
    }
