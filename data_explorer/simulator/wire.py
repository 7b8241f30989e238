"""Envelopes and bodies as CommCare writes them, as bytes. Pure.

Records arrive already rendered as JSON text (see ``cases.render``,
``FormSpace.render``, ``UserSpace.render``); these functions only wrap them, so
a page is built with one join and one encode.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

NOT_AUTHORIZED = b'{"error": "not authorized"}'


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def case_list(cases: list[str], matching: int, next_url: str | None) -> bytes:
    """Case API v2 list: ``next`` only when there is a next page (the key is absent otherwise)."""
    tail = f', "next": {json.dumps(next_url)}}}' if next_url else "}"
    return f'{{"matching_records": {matching}, "cases": [{", ".join(cases)}]{tail}'.encode()


def case_bulk(results: list[str], missing: int) -> bytes:
    return (
        f'{{"matching_records": {len(results) - missing}, "missing_records": {missing}, '
        f'"cases": [{", ".join(results)}]}}'
    ).encode()


def missing_case(case_id: str | None = None, external_id: str | None = None) -> str:
    key, value = ("case_id", case_id) if external_id is None else ("external_id", external_id)
    return f'{{"{key}": {json.dumps(value)}, "error": "not found"}}'


def tastypie_link(path: str, pairs: list[tuple[str, str]], limit: int, offset: int) -> str:
    """A relative ``meta.next``/``previous``: the request's parameters with limit and offset replaced."""
    kept = [(k, v) for k, v in pairs if k not in ("limit", "offset")]
    return f"{path}?{urlencode([*kept, ('limit', str(limit)), ('offset', str(offset))])}"


def tastypie_list(objects: list[str], *, limit: int, offset: int, total: int, path: str,
                  pairs: list[tuple[str, str]]) -> bytes:
    next_link = tastypie_link(path, pairs, limit, offset + limit) if offset + limit < total else None
    previous = tastypie_link(path, pairs, limit, max(offset - limit, 0)) if offset > 0 else None
    meta = (
        f'{{"limit": {limit}, "next": {json.dumps(next_link)}, "offset": {offset}, '
        f'"previous": {json.dumps(previous)}, "total_count": {total}}}'
    )
    return f'{{"meta": {meta}, "objects": [{", ".join(objects)}]}}'.encode("utf-8")


def html_error_page(status: int = 500) -> bytes:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>CommCare HQ</title></head>\n"
        f"<body><h1>Sorry, something went wrong ({status})</h1>"
        "<p>We have been notified and are looking into it. Please try again later.</p></body></html>\n"
    ).encode()


def body_without_keys(endpoint: str) -> bytes:
    """A 200 body that lacks the keys a client needs for this endpoint."""
    if endpoint == "cases":
        return b'{"matching_records": 1}'
    if endpoint in ("case", "form", "user", "app", "identity"):
        return b'{"domain": "unknown"}'
    return b'{"meta": {"limit": 20, "offset": 0}}'


UNSTORABLE_KEYS = (b'"case_name": "', b'"first_name": "', b'"username": "', b'"name": "')


def with_unstorable_text(body: bytes) -> bytes:
    """The body with a NUL and an unpaired surrogate (both valid JSON escapes, neither storable in
    PostgreSQL) at the start of every value of the first of ``UNSTORABLE_KEYS`` it contains."""
    for key in UNSTORABLE_KEYS:
        if key in body:
            return body.replace(key, key + b"\\u0000\\ud800")
    return body
