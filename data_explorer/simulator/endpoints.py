"""The CommCare HQ endpoints: one function each, taking the runtime and a checked request.

Authentication, project-space membership and faults are handled before these
run (``server``); here each endpoint parses its parameters, selects and renders.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode

from data_explorer.simulator import wire
from data_explorer.simulator.asgi import Request, Response, empty
from data_explorer.simulator.auth import OAuthError
from data_explorer.simulator.cases import render as render_case
from data_explorer.simulator.dataset import ProjectSpace
from data_explorer.simulator.pools import ASCII
from data_explorer.simulator.queries import (
    CASE_MAX_LIMIT, ApiError, FormQuery, bad_request, encode_cursor, error, parse_case_ids, parse_case_query,
    parse_form_query, parse_paging, to_boolean,
)
from data_explorer.simulator.runtime import Runtime
from data_explorer.simulator.selection import case_by_external_id, case_by_id, case_page, form_by_id, form_page
from data_explorer.simulator.synth import parse_id

USER_DEFAULT_LIMIT, USER_MAX_LIMIT = 20, 1000


def _space(rt: Runtime, req: Request) -> ProjectSpace:
    return rt.dataset.spaces[req.match["domain"]]


def _listed_space(rt: Runtime, req: Request) -> ProjectSpace:
    """The space of a list request, counted: late changes that are due become visible before it is answered."""
    space = _space(rt, req)
    if space.list_request():
        rt.data_changed()
    return space


def _link_base(rt: Runtime, req: Request) -> str:
    """The base of absolute links: CommCare builds them from its own address, not the one the client used."""
    public = rt.behaviour.public_base_url
    return req.base_url if public is None else public.replace("{port}", req.port)


# --- Case API v2 -------------------------------------------------------------------------------


async def case_list(rt: Runtime, req: Request) -> Response:
    space = _listed_space(rt, req)
    base, path = _link_base(rt, req), req.path
    key = (id(space), space.revision, base, path, req.scope["query_string"])
    prefetched = rt.prefetch.take(key)
    body = next_query = None
    if prefetched is not None:
        try:
            body, next_query = await asyncio.wrap_future(prefetched)
        except Exception:  # cancelled or failed: render it here, where errors are answered properly
            body = None
    if body is None:
        body, next_query = _case_list_body(rt, space, req.pairs, base, path)
    if next_query is not None:
        rt.prefetch.submit(
            (id(space), space.revision, base, path, next_query.encode()),
            functools.partial(_case_list_body, rt, space, parse_qsl(next_query), base, path),
        )
    return Response(200, body)


def _case_list_body(rt: Runtime, space: ProjectSpace, pairs: list[tuple[str, str]], base: str,
                    path: str) -> tuple[bytes, str | None]:
    """A Case API v2 list page, and the query string of the next page if there is one."""
    query = parse_case_query(pairs, rt.behaviour.millisecond_order)
    matching, page = case_page(space, query, rt.cache)
    cases, printer = space.cases, rt.printer
    rendered, last = [], None
    for index, state in page:
        last = cases.values(index, state)
        rendered.append(render_case(cases, last, ASCII, printer))
    next_query = None
    if last is not None and len(page) == query.limit:  # the cursor carries the last record's stored indexed_on
        next_query = urlencode({"cursor": encode_cursor(query.params, last.indexed_on_text(printer), last.case_id)})
    return wire.case_list(rendered, matching, f"{base}{path}?{next_query}" if next_query else None), next_query


async def case_detail(rt: Runtime, req: Request) -> Response:
    space = _space(rt, req)
    ids = parse_case_ids(req.match["ids"])
    if "," not in req.match["ids"] and len(ids) == 1:
        found = case_by_id(space, ids[0])
        if found is None:
            raise _missing(rt, space, ids[0])
        return Response(200, render_case(space.cases, space.cases.values(*found), ASCII, rt.printer).encode())
    return Response(200, _bulk(rt, space, ids, []))


async def case_bulk_fetch(rt: Runtime, req: Request) -> Response:
    space = _space(rt, req)
    try:
        payload = json.loads(await req.body() or b"{}")
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(payload, dict) or set(payload) - {"case_ids", "external_ids"}:
        raise bad_request("Expected an object with 'case_ids' and/or 'external_ids'.")
    case_ids, external_ids = payload.get("case_ids") or [], payload.get("external_ids") or []
    for name, values in (("case_ids", case_ids), ("external_ids", external_ids)):
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise bad_request(f"'{name}' must be a list of strings.")
    return Response(200, _bulk(rt, space, case_ids, external_ids))


def _bulk(rt: Runtime, space: ProjectSpace, case_ids: list[str], external_ids: list[str]) -> bytes:
    if len(case_ids) + len(external_ids) > CASE_MAX_LIMIT:
        raise bad_request(f"You cannot request more than {CASE_MAX_LIMIT} cases per request.")
    results, missing = [], 0
    for case_id in case_ids:
        found = case_by_id(space, case_id)
        if found is None:
            results.append(wire.missing_case(case_id=case_id))
            missing += 1
        else:
            results.append(render_case(space.cases, space.cases.values(*found), ASCII, rt.printer))
    for external_id in external_ids:
        found = case_by_external_id(space, external_id)
        if found is None:
            results.append(wire.missing_case(external_id=external_id))
            missing += 1
        else:
            results.append(render_case(space.cases, space.cases.values(*found), ASCII, rt.printer))
    return wire.case_bulk(results, missing)


def _missing(rt: Runtime, space: ProjectSpace, case_id: str) -> ApiError:
    parsed = parse_id(case_id)
    owner = rt.dataset.case_tags.get(parsed[0]) if parsed else None
    if owner is not None and owner != space.name:
        return error(403, f"Insufficient permission for Case '{case_id}'")
    return error(404, f"Case '{case_id}' not found")


# --- Form API v0.5 -----------------------------------------------------------------------------


async def form_list(rt: Runtime, req: Request) -> Response:
    space = _listed_space(rt, req)
    query = parse_form_query(req.pairs, rt.behaviour.strict_form_dates, rt.behaviour.millisecond_order)
    base = _link_base(rt, req)
    key = ("forms", id(space), space.revision, base, _form_key(query))
    prefetched = rt.prefetch.take(key)
    result = None
    if prefetched is not None:
        try:
            result = await asyncio.wrap_future(prefetched)
        except Exception:  # cancelled or failed: render it here
            result = None
    if result is None:
        result = _form_objects(rt, space, query, base)
    total, objects, instants = result
    following = _next_form_query(query, instants)
    if following is not None:
        rt.prefetch.submit(
            ("forms", id(space), space.revision, base, _form_key(following)),
            functools.partial(_form_objects, rt, space, following, base),
        )
    body = wire.tastypie_list(objects, limit=query.limit, offset=query.offset, total=total, path=req.path, pairs=req.pairs)
    return Response(200, body)


def _form_objects(rt: Runtime, space: ProjectSpace, query: FormQuery, base: str) -> tuple[int, list[str], list[int]]:
    """(total count, the page's forms as JSON text, their indexed_on instants)."""
    total, page = form_page(space, query, rt.cache)
    return total, [space.forms.render(d, base, rt.printer) for d in page], [d.indexed for d in page]


def _form_key(query: FormQuery) -> tuple:
    """What a form query selects, whatever the spelling and order of its parameters."""
    return (query.limit, query.offset, query.order_field, query.descending, tuple(sorted(query.bounds)),
            query.xmlns, query.app_id, query.case_id, query.include_archived)


def _next_form_query(query: FormQuery, instants: list[int]) -> FormQuery | None:
    """The request a client most likely makes next after a full page, to render it ahead.

    Clients ordering by ``indexed_on`` page by date (as our loader and commcare-export do): they ask
    from the last instant seen (``indexed_on_start``), stepping the offset only when the whole page
    shares one instant. Others follow ``meta.next`` (the next offset).
    """
    if not instants or len(instants) < query.limit:
        return None
    if query.order_field != 1 or query.descending:
        return replace(query, offset=query.offset + query.limit)
    start = next((b for b in query.bounds if b[:2] == (1, "start")), None)
    last = instants[-1]
    offset = query.offset + len(instants) if start is not None and instants[0] == last == start[2] else 0
    bounds = tuple(b for b in query.bounds if b is not start) + ((1, "start", last),)
    return replace(query, bounds=bounds, offset=offset)


async def form_detail(rt: Runtime, req: Request) -> Response:
    space = _space(rt, req)
    desc = form_by_id(space, req.match["id"])
    if desc is None:
        return empty(404)
    return Response(200, space.forms.render(desc, _link_base(rt, req), rt.printer).encode())


# --- User API v0.5 -----------------------------------------------------------------------------


async def user_list(rt: Runtime, req: Request) -> Response:
    space = _space(rt, req)
    limit, offset = parse_paging(req.pairs, USER_DEFAULT_LIMIT, USER_MAX_LIMIT)
    params = dict(req.pairs)
    selected = space.users.select(params.get("group"), to_boolean(params.get("archived", "")))
    extras = to_boolean(params.get("extras", ""))
    objects = [space.users.render(j, extras) for j in selected[offset: offset + limit]]
    return Response(200, wire.tastypie_list(objects, limit=limit, offset=offset, total=len(selected), path=req.path,
                                            pairs=req.pairs))


async def user_detail(rt: Runtime, req: Request) -> Response:
    space = _space(rt, req)
    j = space.users.index_of(req.match["id"])
    if j is None:
        return empty(404)
    return Response(200, space.users.render(j, to_boolean(dict(req.pairs).get("extras", ""))).encode())


# --- Web User API v0.5 -------------------------------------------------------------------------


async def web_user_list(rt: Runtime, req: Request) -> Response:
    """Every web user of the space (CommCare lists them whole: no archived filter, no groups);
    ``web_username`` picks one."""
    space = _space(rt, req)
    limit, offset = parse_paging(req.pairs, USER_DEFAULT_LIMIT, USER_MAX_LIMIT)
    selected = space.users.web_users(dict(req.pairs).get("web_username"))
    objects = [space.users.render_web(u) for u in selected[offset: offset + limit]]
    return Response(200, wire.tastypie_list(objects, limit=limit, offset=offset, total=len(selected), path=req.path,
                                            pairs=req.pairs))


async def web_user_detail(rt: Runtime, req: Request) -> Response:
    space = _space(rt, req)
    user = space.users.web_user(req.match["id"])
    return Response(200, space.users.render_web(user).encode()) if user is not None else empty(404)


# --- Application API ---------------------------------------------------------------------------


async def app_list(rt: Runtime, req: Request) -> Response:
    return Response(200, _space(rt, req).apps.json())


async def app_detail(rt: Runtime, req: Request) -> Response:
    body = _space(rt, req).apps.json(req.match["id"])
    return Response(200, body) if body is not None else empty(404)


async def app_xform(rt: Runtime, req: Request) -> Response:
    """A form's XForm, anonymous as CommCare serves it (``safe_cached_download``); CommCare's default
    content type for it, text/html."""
    body = _space(rt, req).apps.xform(req.match["app_id"], int(req.match["module"]), int(req.match["form"]))
    return Response(200, body, "text/html; charset=utf-8") if body is not None else empty(404)


# --- who is calling ----------------------------------------------------------------------------


async def user_domains(rt: Runtime, req: Request) -> Response:
    limit, offset = parse_paging(req.pairs, 20, 1000)
    # like CommCare, only project spaces whose plan has the integration privilege are listed
    domains = [d for d in map(rt.config.domain, req.user.domains) if d is not None and d.integration_privilege]
    objects = [json.dumps({"domain_name": d.name, "project_name": d.display_name}, ensure_ascii=False)
               for d in domains[offset: offset + limit]]
    return Response(200, wire.tastypie_list(objects, limit=limit, offset=offset, total=len(domains), path=req.path,
                                            pairs=req.pairs))


async def identity(rt: Runtime, req: Request) -> Response:
    user = req.user
    return Response(200, wire.dumps({
        "id": rt.web_user_ids[user.username], "username": user.username, "first_name": user.first_name,
        "last_name": user.last_name, "email": user.email_address,
    }))


# --- OAuth -------------------------------------------------------------------------------------


async def oauth_authorize(rt: Runtime, req: Request) -> Response:
    try:
        location = rt.auth.authorize(dict(req.pairs))
    except OAuthError as exc:
        return Response(exc.status, wire.dumps(exc.body()))
    return Response(302, b"", None, [("Location", location)])


async def oauth_token(rt: Runtime, req: Request) -> Response:
    raw = await req.body()
    content_type = req.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            form = json.loads(raw or b"{}")
            if not isinstance(form, dict):
                raise ValueError
            form = {str(k): str(v) for k, v in form.items()}
        else:
            form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except (ValueError, UnicodeDecodeError):
        return Response(400, wire.dumps({"error": "invalid_request", "error_description": "unreadable body"}))
    try:
        body = rt.auth.token(form, _basic_client(req.headers.get("authorization")))
    except OAuthError as exc:
        return Response(exc.status, wire.dumps(exc.body()), headers=[("Cache-Control", "no-store")])
    return Response(200, wire.dumps(body), headers=[("Cache-Control", "no-store")])


def _basic_client(authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        return base64.b64decode(authorization[6:].strip()).decode("utf-8").partition(":")[0] or None
    except (ValueError, UnicodeDecodeError):
        return None
