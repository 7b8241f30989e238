"""The incremental cursor: the highest ``indexed_on`` seen and the ids seen at it.

Kept apart from paging. A record is new when it is later than the cursor, or
at the same instant with an id not seen yet; this drops the records an API
repeats at a page boundary without losing any that share a timestamp.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

MAX_IDS_AT_INSTANT = 10_000  # bounds the checkpoint's size against a pathological source


class IndexedOnCursor:
    def __init__(self, state: dict[str, Any] | None = None):
        self.instant: datetime | None = None
        self.ids: set[str] = set()
        if state:
            self.instant = datetime.fromisoformat(state["indexed_on"])
            self.ids = set(state.get("ids", ()))

    def accept(self, instant: datetime, record_id: str) -> bool:
        """Advance past this record; False when it was already taken."""
        if self.instant is None or instant > self.instant:
            self.instant = instant
            self.ids = {record_id}
            return True
        if instant == self.instant and record_id not in self.ids:
            if len(self.ids) < MAX_IDS_AT_INSTANT:  # past it, a repeat is upserted again: harmless
                self.ids.add(record_id)
            return True
        return False

    def state(self) -> dict[str, Any] | None:
        if self.instant is None:
            return None
        return {"indexed_on": self.instant.isoformat(), "ids": sorted(self.ids)}
