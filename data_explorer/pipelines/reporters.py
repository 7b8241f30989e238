"""Where a run's status goes: the control table (for status polling) and the terminal.

The runner calls ``report(status, important=...)``; important reports (phase
changes, the end) are never throttled, progress reports are.
"""

from __future__ import annotations

import time
from typing import Protocol

import psycopg

from data_explorer.pipelines.status import RunStatus
from data_explorer.warehouse.database import Database
from data_explorer.warehouse.runs import save_run


class Reporter(Protocol):
    def report(self, status: RunStatus, *, important: bool = False) -> None: ...

    def close(self) -> None: ...


class Throttle:
    def __init__(self, interval: float):
        self.interval = interval
        self._last = float("-inf")

    def due(self, important: bool) -> bool:
        now = time.monotonic()
        if important or now - self._last >= self.interval:
            self._last = now
            return True
        return False


class ControlTableReporter:
    """Writes the run row on its own autocommit connection, apart from the load's transactions.

    A lost connection (its backend terminated, the server restarted) is opened again once: a run
    whose sessions were all cut must still record how it ended."""

    def __init__(self, db: Database, control_schema: str, interval: float = 0.5):
        self._db = db
        self._conn = db.connect(autocommit=True)
        self._schema = control_schema
        self._throttle = Throttle(interval)

    def report(self, status: RunStatus, *, important: bool = False) -> None:
        if not self._throttle.due(important):
            return
        try:
            save_run(self._conn, self._schema, status)
        except psycopg.OperationalError:
            if not self._conn.broken:
                raise
            self._conn.close()
            self._conn = self._db.connect(autocommit=True)
            save_run(self._conn, self._schema, status)

    def close(self) -> None:
        self._conn.close()


class FanOut:
    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def report(self, status: RunStatus, *, important: bool = False) -> None:
        for reporter in self.reporters:
            reporter.report(status, important=important)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.close()
