"""The CommCare sources: paging, the incremental cursor and row mapping meeting in one short loop each.

Pages are fetched and parsed in a thread of their own, a page ahead of the loop that maps their records.
"""

from __future__ import annotations

from typing import Any, Iterator

from data_explorer.loaders.batch import Batch
from data_explorer.loaders.commcare import cases, forms, users
from data_explorer.loaders.commcare.cases import CASE_INDEXED_ON, case_row
from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.commcare.forms import FORM_INDEXED_ON, block_rows, form_row
from data_explorer.loaders.commcare.paging import case_pages, form_pages, offset_pages
from data_explorer.loaders.commcare.users import USER_LISTS, user_row
from data_explorer.loaders.cursor import IndexedOnCursor
from data_explorer.loaders.prefetch import prefetch


class _Source:
    def __init__(self, client: CommCareClient, domain: str, page_size: int):
        self.client, self.domain, self.page_size = client, domain, page_size


class CasesSource(_Source):
    produces = {"cases": cases.CASE_COLUMNS}

    def batches(self, cursor_state: dict[str, Any] | None) -> Iterator[Batch]:
        cursor = IndexedOnCursor(cursor_state)
        for page in prefetch(case_pages(self.client, self.domain, limit=self.page_size, since=cursor.instant), depth=1):
            rows = [row for row in map(case_row, page.records) if cursor.accept(row[CASE_INDEXED_ON], row[0])]
            yield Batch({"cases": rows}, [], cursor.state(), len(page.records), page.total)


class FormsSource(_Source):
    produces = {"forms": forms.FORM_COLUMNS, "form_case_blocks": forms.BLOCK_COLUMNS}

    def batches(self, cursor_state: dict[str, Any] | None) -> Iterator[Batch]:
        cursor = IndexedOnCursor(cursor_state)
        for page in prefetch(form_pages(self.client, self.domain, limit=self.page_size, since=cursor.instant), depth=1):
            forms, blocks, ids = [], [], []
            for form in page.records:
                row = form_row(form)  # checked in full even when the cursor drops it: rare, at page boundaries
                form_id = row[0]
                if not cursor.accept(row[FORM_INDEXED_ON], form_id):
                    continue
                forms.append(row)
                blocks.extend(block_rows(form_id, form["form"]))
                ids.append(form_id)
            yield Batch({"forms": forms, "form_case_blocks": blocks}, ids, cursor.state(), len(page.records), page.total)


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

