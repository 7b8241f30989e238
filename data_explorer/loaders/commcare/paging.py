"""Paginators: they only page. Each yields ``Page``s of raw records; what is new is decided elsewhere.

- Case API v2: cursor paging through the absolute ``next`` link, present only on full pages.
- Form API v0.5: keyset paging on ``indexed_on`` (``order_by=indexed_on``,
  ``indexed_on_start``), because offsets shift when records change mid-pull; an
  offset is used only to step through a page whose records all fall in one
  millisecond. The next page starts at the last record's millisecond, not its
  printed microseconds: the search index sorts and filters at millisecond
  precision, so the printed values of one millisecond come in any order, and
  starting after the highest of them would skip the others.
  Archived forms are included: the ``archived`` column says which they are.
- Tastypie resources (users): offset paging through the relative ``meta.next``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.cursor import floor_to_millisecond
from data_explorer.loaders.errors import MalformedResponse
from data_explorer.loaders.timestamps import format_for_filter, parse_timestamp

MAX_PAGES = 10_000_000  # a server whose links never end is a malformed one


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    total: int | None  # what the server says matches, when it says


def _records(body: dict[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    records = body.get(key)
    if not isinstance(records, list):
        raise MalformedResponse(f"{what}: the response has no {key!r} list (keys: {', '.join(sorted(body)[:8]) or 'none'})")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise MalformedResponse(f"{what}: {key}[{i}] is {type(record).__name__}, expected an object")
    return records


def _total(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def case_pages(client: CommCareClient, domain: str, *, limit: int, since: datetime | None,
               until: datetime | None = None) -> Iterator[Page]:
    """Cases indexed from ``since`` on (and up to ``until``, both included) in CommCare's order."""
    what = "Case API v2"
    url = f"/a/{domain}/api/case/v2/"
    params: dict[str, Any] | None = {"limit": limit}
    if since is not None:
        params["indexed_on.gte"] = format_for_filter(since)
    if until is not None:
        params["indexed_on.lte"] = format_for_filter(until)
    seen_links: set[str] = set()
    for _ in range(MAX_PAGES):
        body = client.get_json(url, params, what=what)
        records = _records(body, "cases", what)
        yield Page(records, _total(body.get("matching_records")))
        link = body.get("next")
        if link is None:
            return
        if not isinstance(link, str) or not link:
            raise MalformedResponse(f"{what}: 'next' is {link!r}, expected a URL")
        if link in seen_links:
            raise MalformedResponse(f"{what}: 'next' repeats an earlier page ({link}); paging would never end")
        seen_links.add(link)
        url, params = client.follow(link, what), None
    raise MalformedResponse(f"{what}: more than {MAX_PAGES} pages")


def form_pages(client: CommCareClient, domain: str, *, limit: int, since: datetime | None,
               until: datetime | None = None) -> Iterator[Page]:
    """Forms indexed from ``since`` on (and up to ``until``, both included), archived ones too."""
    what = "Form API v0.5"
    url = f"/a/{domain}/api/v0.5/form/"
    start, offset = (floor_to_millisecond(since) if since is not None else None), 0
    for _ in range(MAX_PAGES):
        params: dict[str, Any] = {"limit": limit, "order_by": "indexed_on", "offset": offset, "include_archived": "true"}
        if start is not None:
            params["indexed_on_start"] = format_for_filter(start)
        if until is not None:
            params["indexed_on_end"] = format_for_filter(until)
        body = client.get_json(url, params, what=what)
        records = _records(body, "objects", what)
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        yield Page(records, _total(meta.get("total_count")))
        if len(records) < limit:
            return
        last = floor_to_millisecond(max(
            parse_timestamp(r.get("indexed_on"), "indexed_on", f"form {r.get('id')!r}") for r in records
        ))
        if start is not None and last == start:
            offset += len(records)  # a whole page within one millisecond: step through it
        else:
            start, offset = last, 0
    raise MalformedResponse(f"{what}: more than {MAX_PAGES} pages")


def offset_pages(client: CommCareClient, path: str, *, limit: int, what: str) -> Iterator[Page]:
    url: str = path
    params: dict[str, Any] = {"limit": limit, "offset": 0}
    seen_offsets: set[str] = set()
    for _ in range(MAX_PAGES):
        body = client.get_json(url, params, what=what)
        records = _records(body, "objects", what)
        meta = body.get("meta")
        if not isinstance(meta, dict):
            raise MalformedResponse(f"{what}: the response has no 'meta' object")
        yield Page(records, _total(meta.get("total_count")))
        link = meta.get("next")
        if not link:
            return
        if not isinstance(link, str):
            raise MalformedResponse(f"{what}: meta.next is {link!r}, expected a URL")
        parts = urlsplit(link)  # relative in v0.5: take its path and query, never slice it
        params = dict(parse_qsl(parts.query))
        key = repr(sorted(params.items()))
        if key in seen_offsets or not records:
            raise MalformedResponse(f"{what}: meta.next does not advance ({link}); paging would never end")
        seen_offsets.add(key)
        url = parts.path or path
    raise MalformedResponse(f"{what}: more than {MAX_PAGES} pages")
