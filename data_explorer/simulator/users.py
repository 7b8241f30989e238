"""The mobile workers of one project space, as the User API v0.5 serves them.

Worker ``j`` belongs to group ``j % 3`` and location ``j % 4``; every
seventeenth worker (``j % 17 == 16``) is archived and listed only with
``archived=true``. Workers own the cases (one per family) and submit the forms.
"""

from __future__ import annotations

import unicodedata

from data_explorer.simulator.pools import FIRST_NAMES, RAW, SURNAMES, UTF8, VILLAGES, Text
from data_explorer.simulator.synth import DAY_US, fmt_ts, make_tag, mix64, record_id, stable_hash

GROUPS = 3
LOCATIONS = 4
ARCHIVE_EVERY = 17


def _slug(name: str) -> str:
    ascii_only = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(c for c in ascii_only.lower() if c.isalnum()) or "user"


class UserSpace:
    def __init__(self, seed: int, domain: str, count: int, now: int):
        self.domain = domain
        self.count = count
        self.tag = make_tag(seed, domain, "user")
        self.salt = stable_hash(seed, domain, "user")
        self.now = now
        self.group_ids = [record_id(make_tag(seed, domain, "group"), g) for g in range(GROUPS)]
        self.location_ids = [record_id(make_tag(seed, domain, "location"), k) for k in range(LOCATIONS)]
        self.ids = [record_id(self.tag, j) for j in range(count)]
        self.usernames = [self._username(j) for j in range(count)]

    def _names(self, j: int) -> tuple[Text, Text]:
        h = mix64(self.salt ^ j)
        return FIRST_NAMES[h % len(FIRST_NAMES)], SURNAMES[(h >> 16) % len(SURNAMES)]

    def _username(self, j: int) -> str:
        first, last = self._names(j)
        return f"{_slug(first[RAW])}.{_slug(last[RAW])}{j + 1}@{self.domain}.commcarehq.org"

    def archived(self, j: int) -> bool:
        return j % ARCHIVE_EVERY == ARCHIVE_EVERY - 1

    def group_of(self, j: int) -> str:
        return self.group_ids[j % GROUPS]

    def index_of(self, user_id: str) -> int | None:
        try:
            return self.ids.index(user_id)
        except ValueError:
            return None

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
