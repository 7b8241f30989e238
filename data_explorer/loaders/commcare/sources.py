"""The CommCare sources: paging, the incremental cursor and row mapping meeting in one short loop each.

Pages are fetched and parsed in a thread of their own, a page ahead of the loop that maps their records.

An incremental source reads again from a look-back window behind its cursor (records indexed late
carry earlier stamps than records already read). A page's records at or before the mark the pass
started from are the window's: they go in a batch of their own (``behind``), so that the loading
loop can count how many of them were new, and before the page's later records, whose batch carries
the cursor past them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator

from data_explorer.loaders.batch import Batch
from data_explorer.loaders.commcare import cases, forms, users
from data_explorer.loaders.commcare.cases import CASE_INDEXED_ON, case_row
from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.commcare.forms import FORM_INDEXED_ON, block_rows, form_row
from data_explorer.loaders.commcare.paging import Page, case_pages, form_pages, offset_pages
from data_explorer.loaders.commcare.users import USER_LISTS, user_row
from data_explorer.loaders.cursor import IndexedOnCursor
from data_explorer.loaders.prefetch import prefetch


class _Source:
    def __init__(self, client: CommCareClient, domain: str, page_size: int, *, lookback: timedelta = timedelta(0)):
        self.client, self.domain, self.page_size, self.lookback = client, domain, page_size, lookback


def _windowed(
    pages: Iterable[Page], cursor: IndexedOnCursor, row_of: Callable[[dict[str, Any]], tuple], instant_at: int,
    batch_of: Callable[[list[tuple[tuple, dict[str, Any]]]], tuple[dict[str, list[tuple]], list[str]]],
) -> Iterator[Batch]:
    """Batches of each page's records: those at or before the pass's starting mark (re-read by the
    window) first, then the rest. The total is what the server said at the pass's first page."""
    mark: datetime | None = cursor.instant
    total: int | None = None
    for page in pages:
        total = page.total if total is None else total
        mapped = [(row_of(record), record) for record in page.records]
        behind = [m for m in mapped if mark is not None and m[0][instant_at] <= mark]
        if behind:
            taken = [m for m in behind if cursor.accept(m[0][instant_at], m[0][0])]
            rows, parents = batch_of(taken)
            yield Batch(rows, parents, cursor.state(), len(behind), total, reread=len(behind))
        ahead = [m for m in mapped if mark is None or m[0][instant_at] > mark]
        taken = [m for m in ahead if cursor.accept(m[0][instant_at], m[0][0])]
        rows, parents = batch_of(taken)
        yield Batch(rows, parents, cursor.state(), len(ahead), total)


def _case_batch(taken: list[tuple[tuple, dict[str, Any]]]) -> tuple[dict[str, list[tuple]], list[str]]:
    return {"cases": [row for row, _ in taken]}, []


def _form_batch(taken: list[tuple[tuple, dict[str, Any]]]) -> tuple[dict[str, list[tuple]], list[str]]:
    rows, blocks, ids = [], [], []
    for row, form in taken:
        rows.append(row)
        blocks.extend(block_rows(row[0], form["form"]))
        ids.append(row[0])
    return {"forms": rows, "form_case_blocks": blocks}, ids


class CasesSource(_Source):
    produces = {"cases": cases.CASE_COLUMNS}

    def batches(self, cursor_state: dict[str, Any] | None) -> Iterator[Batch]:
        cursor = IndexedOnCursor(cursor_state)
        pages = case_pages(self.client, self.domain, limit=self.page_size, since=cursor.since(self.lookback))
        yield from _windowed(prefetch(pages, depth=1), cursor, case_row, CASE_INDEXED_ON, _case_batch)


class FormsSource(_Source):
    produces = {"forms": forms.FORM_COLUMNS, "form_case_blocks": forms.BLOCK_COLUMNS}

    def batches(self, cursor_state: dict[str, Any] | None) -> Iterator[Batch]:
        cursor = IndexedOnCursor(cursor_state)
        pages = form_pages(self.client, self.domain, limit=self.page_size, since=cursor.since(self.lookback))
        yield from _windowed(prefetch(pages, depth=1), cursor, form_row, FORM_INDEXED_ON, _form_batch)


class UsersSource(_Source):
    """Active mobile workers, deactivated ones, then web users: one batch per page, in that order.

    Batches are written in order and upserted by user id, so a user served by two lists (deactivated
    or reactivated between the reads) ends as one row, as the later list shows them: the later read
    saw the change. The total is what the lists read so far say they hold."""

    produces = {"users": users.USER_COLUMNS}

    def batches(self, cursor_state: dict[str, Any] | None) -> Iterator[Batch]:
        before = 0  # users the lists already read said they held
        for listed in USER_LISTS:
            path = f"/a/{self.domain}/api/v0.5/{listed.path}"
            total = fetched = 0
            for page in offset_pages(self.client, path, limit=self.page_size, what=listed.what):
                fetched += len(page.records)
                total = page.total if page.total is not None else fetched
                rows = [user_row(u, listed) for u in page.records]
                yield Batch({"users": rows}, [], None, len(page.records), before + total)
            before += total


LOADERS = {"commcare.cases": CasesSource, "commcare.forms": FormsSource, "commcare.users": UsersSource}
