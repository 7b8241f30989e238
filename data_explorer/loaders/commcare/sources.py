"""The CommCare sources: paging, the incremental cursor and row mapping meeting in one short loop each.

Pages are fetched and parsed in a thread of their own, a page ahead of the loop that maps their records.
"""

from __future__ import annotations

from typing import Any, Iterator

from data_explorer.loaders.batch import Batch
from data_explorer.loaders.commcare import cases, forms, users
from data_explorer.loaders.commcare.cases import case_key, case_row
from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.commcare.forms import block_rows, form_id_of, form_row
from data_explorer.loaders.commcare.paging import case_pages, form_pages, offset_pages
from data_explorer.loaders.commcare.users import user_row
from data_explorer.loaders.cursor import IndexedOnCursor
from data_explorer.loaders.prefetch import prefetch
from data_explorer.loaders.timestamps import parse_timestamp


class _Source:
    def __init__(self, client: CommCareClient, domain: str, page_size: int):
        self.client, self.domain, self.page_size = client, domain, page_size


class CasesSource(_Source):
    produces = {"cases": cases.CASE_COLUMNS}

    def batches(self, cursor_state: dict[str, Any] | None) -> Iterator[Batch]:
        cursor = IndexedOnCursor(cursor_state)
        for page in prefetch(case_pages(self.client, self.domain, limit=self.page_size, since=cursor.instant), depth=1):
            rows = [case_row(case) for case in page.records if cursor.accept(*case_key(case))]
            yield Batch({"cases": rows}, [], cursor.state(), len(page.records), page.total)


class FormsSource(_Source):
    produces = {"forms": forms.FORM_COLUMNS, "form_case_blocks": forms.BLOCK_COLUMNS}

    def batches(self, cursor_state: dict[str, Any] | None) -> Iterator[Batch]:
        cursor = IndexedOnCursor(cursor_state)
        for page in prefetch(form_pages(self.client, self.domain, limit=self.page_size, since=cursor.instant), depth=1):
            forms, blocks, ids = [], [], []
            for form in page.records:
                form_id = form_id_of(form)
                if not cursor.accept(parse_timestamp(form.get("indexed_on"), "indexed_on", f"form {form_id}"), form_id):
                    continue
                forms.append(form_row(form))
                blocks.extend(block_rows(form_id, form["form"]))
                ids.append(form_id)
            yield Batch({"forms": forms, "form_case_blocks": blocks}, ids, cursor.state(), len(page.records), page.total)


class UsersSource(_Source):
    produces = {"users": users.USER_COLUMNS}

    def batches(self, cursor_state: dict[str, Any] | None) -> Iterator[Batch]:
        path = f"/a/{self.domain}/api/v0.5/user/"
        for page in offset_pages(self.client, path, limit=self.page_size, what="User API"):
            yield Batch({"users": [user_row(u) for u in page.records]}, [], None, len(page.records), page.total)


LOADERS = {"commcare.cases": CasesSource, "commcare.forms": FormsSource, "commcare.users": UsersSource}

