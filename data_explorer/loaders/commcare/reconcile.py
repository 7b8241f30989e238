"""What CommCare still holds, asked cheaply: counts and ids of records indexed within a range of time,
and which case ids it no longer has.

A deleted case or form is taken out of the search index both list APIs read, so it simply stops being
returned: there is no deletion feed. Counting a range costs one request (a page of one record, and the
server's count of the range), so a range whose count matches what is stored needs nothing more; only a
range that holds fewer records than are stored is listed (a few pages at most, once the ranges are
small). Case ids missing from a listing are then checked with the Case API v2 bulk fetch, which names
each id it does not have: a case re-indexed since it was stored sits in another range and must not be
taken for deleted. Ranges compare at the search index's precision, the millisecond, and both ends are
inclusive, as the APIs' own filters are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.commcare.paging import case_pages, form_pages
from data_explorer.loaders.errors import MalformedResponse


@dataclass(frozen=True)
class Range:
    """Records indexed from ``start`` to ``end``, both whole milliseconds and both included."""

    start: datetime
    end: datetime


class ServerRecords(Protocol):
    """One source's records on the server, by range."""

    def count(self, span: Range) -> int: ...

    def ids(self, span: Range) -> set[str]: ...

    def confirm_missing(self, ids: list[str]) -> set[str]: ...


def _count(pages) -> int:
    first = next(pages)
    if first.total is None:
        raise MalformedResponse("the server gave no count of the records in a range, which the reconcile step needs")
    return first.total


def _ids(pages, key: str, what: str) -> set[str]:
    ids = set()
    for page in pages:
        for record in page.records:
            value = record.get(key)
            if not isinstance(value, str) or not value:
                raise MalformedResponse(f"{what}: a record has no {key} (keys: {', '.join(sorted(record)[:10])})")
            ids.add(value)
    return ids


class _Server:
    """A list API read by range: its pages and the id of its records."""

    what: str
    key: str

    def __init__(self, client: CommCareClient, domain: str, page_size: int):
        self.client, self.domain, self.page_size = client, domain, page_size

    def _pages(self, span: Range, limit: int):
        raise NotImplementedError

    def count(self, span: Range) -> int:
        return _count(self._pages(span, 1))

    def ids(self, span: Range) -> set[str]:
        return _ids(self._pages(span, self.page_size), self.key, self.what)


class ServerCases(_Server):
    what, key = "Case API v2", "case_id"

    def _pages(self, span: Range, limit: int):
        return case_pages(self.client, self.domain, limit=limit, since=span.start, until=span.end)

    def confirm_missing(self, ids: list[str]) -> set[str]:
        """Those of ``ids`` the bulk fetch reports as not found."""
        missing: set[str] = set()
        for i in range(0, len(ids), self.page_size):
            chunk = ids[i:i + self.page_size]
            body = self.client.post_json(f"/a/{self.domain}/api/case/v2/bulk-fetch/", {"case_ids": chunk},
                                         what="Case API v2 bulk fetch")
            missing |= _not_found(body, set(chunk))
        return missing


def _not_found(body: dict[str, Any], asked: set[str]) -> set[str]:
    cases = body.get("cases")
    if not isinstance(cases, list):
        raise MalformedResponse(f"Case API v2 bulk fetch: the response has no 'cases' list (keys: {', '.join(sorted(body)[:8])})")
    missing, answered = set(), set()
    for entry in cases:
        if not isinstance(entry, dict) or not isinstance(entry.get("case_id"), str):
            raise MalformedResponse("Case API v2 bulk fetch: an entry without a case_id")
        answered.add(entry["case_id"])
        if entry.get("error") is not None:
            missing.add(entry["case_id"])
    if not asked <= answered:  # an id the answer leaves out is not known to be gone: never deleted on a guess
        unanswered = sorted(asked - answered)
        raise MalformedResponse(
            f"Case API v2 bulk fetch: {len(unanswered)} of the ids asked for are not in the answer (e.g. {unanswered[0]})"
        )
    return missing & asked


class ServerForms(_Server):
    what, key = "Form API v0.5", "id"

    def _pages(self, span: Range, limit: int):
        return form_pages(self.client, self.domain, limit=limit, since=span.start, until=span.end)

    def confirm_missing(self, ids: list[str]) -> set[str]:
        # the Form API has no bulk fetch; a form re-indexed since it was stored is read again by the next
        # incremental run, whose stamp is later than the cursor's
        return set(ids)


SERVERS = {"commcare.cases": ServerCases, "commcare.forms": ServerForms}  # sources that can look for deletions
