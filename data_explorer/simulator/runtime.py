"""The mutable state of one running simulator, shared by its endpoints."""

from __future__ import annotations

from collections import Counter

from data_explorer.simulator.auth import Auth
from data_explorer.simulator.config import SimulatorConfig, WebUser, WireBehaviour
from data_explorer.simulator.dataset import Dataset
from data_explorer.simulator.faults import Faults
from data_explorer.simulator.prefetch import Prefetcher
from data_explorer.simulator.quota import QuotaCounter
from data_explorer.simulator.selection import ScanCache
from data_explorer.simulator.stamps import Printer
from data_explorer.simulator.users import api_user_ids


class Runtime:
    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.dataset = Dataset(config)
        self.auth = Auth(config)
        self.faults = Faults(config.faults)
        self.cache = ScanCache()
        self.prefetch = Prefetcher()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.quota = QuotaCounter()
        self.set_behaviour(config.behaviour)
        self.web_user_ids = api_user_ids(config)

    def set_behaviour(self, behaviour: WireBehaviour) -> None:
        """Serve from now on as ``behaviour`` says; pages rendered ahead the old way are dropped."""
        self.behaviour = behaviour
        self.printer = Printer(behaviour.millisecond_order, behaviour.mixed_timestamps)
        self.prefetch.clear()

    def data_changed(self) -> None:
        """Data changed outside a request's own work: forget what was selected or rendered before."""
        self.cache.clear()
        self.prefetch.clear()

    def is_member(self, user: WebUser, domain: str) -> bool:
        return domain in user.domains

    def record(self, endpoint: str, status: str) -> None:
        self.requests[(endpoint, status)] += 1

    def stats(self) -> dict:
        by_endpoint: dict[str, dict[str, int]] = {}
        for (endpoint, status), count in sorted(self.requests.items()):
            by_endpoint.setdefault(endpoint, {})[status] = count
        return {
            "requests": by_endpoint,
            "total": sum(self.requests.values()),
            "faults": dict(sorted(self.faults.fired.items())),
            "prefetched": self.prefetch.hits,
            "quota_refused": self.quota.refused,
        }

    def reset(self, tokens: bool = False) -> None:
        self.dataset.reset()
        self.cache.clear()
        self.prefetch.clear()
        self.requests.clear()
        self.faults.fired.clear()
        self.faults.set(self.config.faults)
        self.quota.clear()
        self.set_behaviour(self.config.behaviour)
        if tokens:
            self.auth.clear()
