"""The incremental cursor: the highest ``indexed_on`` seen, the ids seen at it, and where the next pass reads from.

Kept apart from paging. CommCare promises no order of the printed ``indexed_on``:
its search index sorts at millisecond precision while the printed value has
microseconds (so printed values can go backwards within a millisecond), and a
record indexed late carries a stamp earlier than records already read. So the
cursor never drops a record for being older than the high-water mark: it skips
only a record already taken with the same id at that very instant (an API
repeating the records at a page boundary), and the next pass reads again from a
look-back window behind the mark, where a late record would sit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

MAX_IDS_AT_INSTANT = 10_000  # bounds the checkpoint's size against a pathological source


def floor_to_millisecond(moment: datetime) -> datetime:
    """The search index's precision: a filter from here includes every record of that millisecond."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


class IndexedOnCursor:
    def __init__(self, state: dict[str, Any] | None = None):
        self.instant: datetime | None = None
        self.ids: set[str] = set()
        if state:
            self.instant = datetime.fromisoformat(state["indexed_on"])
            self.ids = set(state.get("ids", ()))

    def accept(self, instant: datetime, record_id: str) -> bool:
        """Take this record; False only when it was already taken at the high-water mark itself."""
        if self.instant is None or instant > self.instant:
            self.instant = instant
            self.ids = {record_id}
            return True
        if instant == self.instant:
            if record_id in self.ids:
                return False
            if len(self.ids) < MAX_IDS_AT_INSTANT:  # past it, a repeat is upserted again: harmless
                self.ids.add(record_id)
        return True  # older than the mark: out of order or indexed late, never dropped

    def since(self, lookback: timedelta) -> datetime | None:
        """Where the next request starts: the mark, floored to the millisecond, less the look-back window."""
        if self.instant is None:
            return None
        return floor_to_millisecond(self.instant) - lookback

    def state(self) -> dict[str, Any] | None:
        if self.instant is None:
            return None
        return {"indexed_on": self.instant.isoformat(), "ids": sorted(self.ids)}
