"""The reconcile step: find the stored records CommCare no longer has (deleted cases and forms simply stop
being returned) and remove them, within a bound of requests per run.

The stored records of a source are split by ``indexed_on`` into ranges; a range whose server count is
at least its stored count is taken as whole (one request), and one that holds fewer is split at its
stored middle, until a range is small enough to list. So a project space with nothing deleted costs one
request per source, and each deleted record about log2(records / page) more. Ids stored but not listed
are confirmed missing where the API can tell (the Case API v2 bulk fetch), then removed.

What it cannot see: a range where as many records were never received (the look-back window's concern)
as were deleted balances out, and is taken as whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from data_explorer.loaders.commcare.reconcile import Range, ServerRecords
from data_explorer.pipelines.registry import Source
from data_explorer.warehouse import reconcile as stored

MS = timedelta(milliseconds=1)


@dataclass
class Reconciled:
    requests: int = 0
    removed: int = 0
    complete: bool = False  # every range was looked at within the bound
    seconds: float = 0.0

    def as_dict(self) -> dict[str, int | bool | float]:
        return {"requests": self.requests, "removed": self.removed, "complete": self.complete, "seconds": round(self.seconds, 3)}


class _Budget:
    def __init__(self, server: ServerRecords, limit: int):
        self.server, self.limit, self.used = server, limit, 0

    @property
    def left(self) -> bool:
        return self.used < self.limit

    def count(self, span: Range) -> int:
        self.used += 1
        return self.server.count(span)

    def ids(self, span: Range, expected: int, page: int) -> set[str]:
        self.used += max(1, -(-expected // page))
        return self.server.ids(span)

    def confirm(self, ids: list[str], page: int) -> set[str]:
        self.used += -(-len(ids) // page)
        return self.server.confirm_missing(ids)


def reconcile_source(conn: psycopg.Connection, raw_schema: str, source: Source, server: ServerRecords, *,
                     page: int, max_requests: int) -> Reconciled:
    """Look for the source's deleted records and remove them (one transaction at the end)."""
    started = time.monotonic()
    top = next(t for t in source.tables if t.parent is None)
    column = "indexed_on"
    result = Reconciled()
    budget = _Budget(server, max_requests)
    with conn.transaction():
        span = stored.bounds(conn, raw_schema, top, column)
    pending = [Range(*span)] if span else []
    candidates: set[str] = set()
    while pending and budget.left:
        span = pending.pop()
        with conn.transaction():
            have = stored.count_between(conn, raw_schema, top, column, span.start, span.end)
        if not have or budget.count(span) >= have:
            continue
        if have <= page or span.start == span.end:
            with conn.transaction():
                ours = stored.ids_between(conn, raw_schema, top, column, span.start, span.end)
            candidates |= ours - budget.ids(span, have, page)
            continue
        with conn.transaction():
            middle = stored.middle(conn, raw_schema, top, column, span.start, span.end)
        if middle >= span.end:  # the upper half holds one millisecond: split just below it
            middle = span.end - MS
        pending += [Range(span.start, middle), Range(middle + MS, span.end)]
    result.complete = not pending
    if candidates:
        gone = sorted(budget.confirm(sorted(candidates), page))
        with conn.transaction():
            result.removed = stored.remove_records(conn, raw_schema, source, gone)
    result.requests = budget.used
    result.seconds = time.monotonic() - started
    with conn.transaction():
        stored.mark_reconciled(conn, raw_schema, source.name, complete=result.complete)
    return result


def due(conn: psycopg.Connection, raw_schema: str, source: str, interval: timedelta, now: datetime) -> bool:
    """Whether the source's last completed reconcile (or full pass) is older than the interval."""
    with conn.transaction():
        last = stored.reconciled_at(conn, raw_schema, source)
    return last is None or now - last >= interval
