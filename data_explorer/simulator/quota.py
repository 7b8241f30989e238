"""CommCare's API quotas: requests per project space and per API user in a minute, counted in fixed windows.

CommCare counts a request it serves against the project space's limits
(``corehq/apps/api/resources/meta.py``, ``corehq/project_limits``) and turns
away the ones over them without counting them. The windows here run on the
simulator's clock (``POST /_sim/clock`` moves it), so a test can reach the
next minute without waiting.
"""

from __future__ import annotations

import math
from collections import Counter

from data_explorer.simulator.config import Quota

WINDOW = 60.0


class QuotaCounter:
    def __init__(self) -> None:
        self.window: int | None = None
        self.by_domain: Counter[str] = Counter()
        self.by_user: Counter[str] = Counter()
        self.refused = 0

    def admit(self, quota: Quota, domain: str, username: str, now: float) -> int | None:
        """None when the request is within the quota (it is counted); else whole seconds (at least 1) until the
        window ends, for ``Retry-After``."""
        if not quota.active:
            return None
        window = int(now // WINDOW)
        if window != self.window:
            self.window = window
            self.by_domain.clear()
            self.by_user.clear()
        user = username.lower()
        if (quota.per_domain_per_minute is not None and self.by_domain[domain] >= quota.per_domain_per_minute) or (
                quota.per_user_per_minute is not None and self.by_user[user] >= quota.per_user_per_minute):
            self.refused += 1
            return max(1, math.ceil((window + 1) * WINDOW - now))
        self.by_domain[domain] += 1
        self.by_user[user] += 1
        return None

    def clear(self) -> None:
        self.window = None
        self.by_domain.clear()
        self.by_user.clear()
        self.refused = 0
