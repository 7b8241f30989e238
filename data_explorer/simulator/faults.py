"""Fault injection: which fault, if any, a request meets. Deterministic given the seed and the request order.

Each rule whose scope covers the request draws once from one seeded random
stream, in rule order; the first draw under its rate wins. Rules at rate 0 do
not draw, so adding one does not shift the others.
"""

from __future__ import annotations

import random
from collections import Counter

from data_explorer.simulator.config import FaultConfig

SERVER_ERRORS = (500, 502, 503)


class Faults:
    def __init__(self, config: FaultConfig):
        self.fired: Counter[str] = Counter()
        self.set(config)

    def set(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)

    def draw(self, scope: str) -> str | None:
        """The fault for one request of endpoint kind ``scope``, or None."""
        for rule in self.config.rules:
            if rule.rate <= 0 or rule.scope not in ("all", scope):
                continue
            if self._rng.random() < rule.rate:
                self.fired[rule.kind] += 1
                return rule.kind
        return None

    def server_error_status(self) -> int:
        return SERVER_ERRORS[self._rng.randrange(len(SERVER_ERRORS))]
