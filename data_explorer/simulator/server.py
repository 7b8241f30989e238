"""The ASGI app: routing, the authentication and membership gate, fault injection, statistics.

Every CommCare endpoint goes through the same gate, in CommCare's order: a
credential (else 401 ``{"error": "not authorized"}``), the project space
(404), membership (403: empty for v0.5 resources, a JSON error for the Case
API v2), the quota when one is set (429: empty, with ``Retry-After`` for the
Case API v2); then perhaps a fault; then the endpoint. A form's XForm is
served without a credential, as CommCare's app downloads are: only the
project space and faults apply to it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from data_explorer.simulator import control, endpoints, wire
from data_explorer.simulator.asgi import Request, Response, drop, empty, send, send_half_and_drop
from data_explorer.simulator.config import SimulatorConfig
from data_explorer.simulator.queries import ApiError, query_pairs
from data_explorer.simulator.runtime import Runtime

log = logging.getLogger(__name__)
Handler = Callable[[Runtime, Request], Awaitable[Response]]
_D = r"^/a/(?P<domain>[^/]+)/api/"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    handler: Handler
    endpoint: str  # name in the statistics and for ``missing_keys`` bodies
    scope: str | None  # fault scope; None: no auth, no faults (OAuth, control)
    style: str = "v05"  # how errors look: "v2" JSON, "v05" empty bodies
    anonymous: bool = False  # no credential asked for, as CommCare's app downloads: faults still apply


def _route(method: str, pattern: str, handler: Handler, endpoint: str, scope: str | None, style: str = "v05",
           anonymous: bool = False) -> Route:
    return Route(method, re.compile(pattern), handler, endpoint, scope, style, anonymous)


ROUTES = (
    _route("GET", _D + r"case/v2/?$", endpoints.case_list, "cases", "cases", "v2"),
    _route("POST", _D + r"case/v2/bulk-fetch/?$", endpoints.case_bulk_fetch, "case_bulk", "cases", "v2"),
    _route("GET", _D + r"case/v2/(?P<ids>[^/]+)/?$", endpoints.case_detail, "case", "cases", "v2"),
    _route("GET", _D + r"(?:v0\.5/form|form/v1)/?$", endpoints.form_list, "forms", "forms"),
    _route("GET", _D + r"(?:v0\.5/form|form/v1)/(?P<id>[^/]+)/?$", endpoints.form_detail, "form", "forms"),
    _route("GET", _D + r"(?:v0\.5/user|user/v1)/?$", endpoints.user_list, "users", "users"),
    _route("GET", _D + r"(?:v0\.5/user|user/v1)/(?P<id>[^/]+)/?$", endpoints.user_detail, "user", "users"),
    _route("GET", _D + r"v0\.5/web-user/?$", endpoints.web_user_list, "web_users", "users"),
    _route("GET", _D + r"v0\.5/web-user/(?P<id>[^/]+)/?$", endpoints.web_user_detail, "web_user", "users"),
    _route("GET", _D + r"(?:v0\.5/application|application/v1)/?$", endpoints.app_list, "apps", "apps"),
    _route("GET", _D + r"(?:v0\.5/application|application/v1)/(?P<id>[^/]+)/?$", endpoints.app_detail, "app", "apps"),
    _route("GET", r"^/a/(?P<domain>[^/]+)/apps/download/(?P<app_id>[\w-]+)/modules-(?P<module>\d+)/forms-(?P<form>\d+)\.xml$",
           endpoints.app_xform, "xform", "xforms", anonymous=True),
    _route("GET", r"^/api/(?:user_domains/v1|v0\.5/user_domains)/?$", endpoints.user_domains, "user_domains", "identity"),
    _route("GET", r"^/api/(?:v0\.5/identity|identity/v1)/?$", endpoints.identity, "identity", "identity"),
    _route("GET", r"^/oauth/authorize/?$", endpoints.oauth_authorize, "oauth_authorize", None),
    _route("POST", r"^/oauth/token/?$", endpoints.oauth_token, "oauth_token", None),
)
CONTROL_ROUTES = (
    _route("GET", r"^/_sim/state/?$", control.state, "_sim", None),
    _route("POST", r"^/_sim/mutate/?$", control.mutate, "_sim", None),
    _route("GET", r"^/_sim/faults/?$", control.get_faults, "_sim", None),
    _route("PUT", r"^/_sim/faults/?$", control.put_faults, "_sim", None),
    _route("GET", r"^/_sim/behaviour/?$", control.get_behaviour, "_sim", None),
    _route("PUT", r"^/_sim/behaviour/?$", control.put_behaviour, "_sim", None),
    _route("GET", r"^/_sim/stats/?$", control.stats, "_sim", None),
    _route("POST", r"^/_sim/reset/?$", control.reset, "_sim", None),
    _route("POST", r"^/_sim/clock/?$", control.clock, "_sim", None),
)


class SimulatorApp:
    """The ASGI application of one simulator."""

    def __init__(self, config: SimulatorConfig):
        self.runtime = Runtime(config)
        self.routes = ROUTES + (CONTROL_ROUTES if config.control_api else ())

    async def __call__(self, scope: dict, receive: Any, send_: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send_)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        route, match, allowed = self._find(scope["method"], path)
        if route is None:
            await send(send_, Response(405 if allowed else 404, b"", "text/html; charset=utf-8",
                                       [("Allow", ", ".join(allowed))] if allowed else []))
            return
        request = Request(scope, receive, scope["method"], path, [], headers, match)
        rt = self.runtime
        try:
            request.pairs = query_pairs(scope["query_string"])
            response, fault = await self._gate(route, request)
            if response is None:
                response = await route.handler(rt, request)
        except ApiError as exc:
            response, fault = Response(exc.status, exc.body, exc.content_type), None
        except Exception:  # a bug: answer as a server would, and say so in the log
            log.exception("simulator error on %s %s", scope["method"], path)
            response, fault = Response(500, wire.html_error_page(500), "text/html; charset=utf-8"), None
        if route.endpoint == "_sim":
            await send(send_, response)
            return
        await self._deliver(scope, send_, route, response, fault)

    def _find(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        allowed = []
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == method:
                return route, match.groupdict(), []
            allowed.append(route.method)
        return None, {}, allowed

    async def _gate(self, route: Route, request: Request) -> tuple[Response | None, str | None]:
        """A response that ends the request early (auth, membership, fault), and the fault drawn."""
        if route.scope is None:
            return None, None
        rt = self.runtime
        domain = request.match.get("domain")
        if route.anonymous:
            if domain not in rt.dataset.spaces:
                return empty(404), None
        else:
            user = rt.auth.authenticate(request.headers.get("authorization"))
            if user is None:
                return Response(401, wire.NOT_AUTHORIZED), None
            request.user = user
        if domain is not None and not route.anonymous:
            if domain not in rt.dataset.spaces:
                return (Response(404, wire.dumps({"error": f"Project space '{domain}' not found"}))
                        if route.style == "v2" else empty(404)), None
            if not rt.is_member(user, domain):
                return (Response(403, wire.dumps({"error": "You do not have permission to access this project space."}))
                        if route.style == "v2" else empty(403)), None
            wait = rt.quota.admit(rt.behaviour.quota, domain, user.username, rt.auth.now())
            if wait is not None:  # api_throttle: an empty 429 with Retry-After; tastypie: a bare 429
                return (Response(429, b"", "text/html; charset=utf-8", [("Retry-After", str(wait))])
                        if route.style == "v2" else empty(429)), None
        fault = rt.faults.draw(route.scope)
        if fault == "unauthorized":
            return Response(401, wire.NOT_AUTHORIZED), fault
        if fault == "rate_limit":  # the Case API v2's way: an empty body, Retry-After (api_throttle)
            return Response(429, b"", "text/html; charset=utf-8",
                            [("Retry-After", str(rt.faults.config.retry_after))]), fault
        if fault == "rate_limit_bare":
            return empty(429), fault
        if fault == "server_error":
            status = rt.faults.server_error_status()
            return Response(status, wire.html_error_page(status), "text/html; charset=utf-8"), fault
        if fault == "html_error":
            return Response(200, wire.html_error_page(500), "text/html; charset=utf-8"), fault
        if fault == "missing_keys":
            return Response(200, wire.body_without_keys(route.endpoint)), fault
        if fault == "slow":
            await asyncio.sleep(rt.faults.config.slow_delay)
        return None, fault

    async def _deliver(self, scope: dict, send_: Any, route: Route, response: Response, fault: str | None) -> None:
        rt = self.runtime
        if fault == "drop_before_headers" and await drop(scope):
            rt.record(route.endpoint, "dropped")
            return
        if fault == "drop_mid_body" and scope.get("sim.transport") is not None:
            rt.record(route.endpoint, "dropped")
            await send_half_and_drop(scope, send_, response)
            return
        if fault == "truncated_json":
            response.body = response.body[: len(response.body) // 2]
        if fault == "unstorable_text" and response.status == 200:
            response.body = wire.with_unstorable_text(response.body)
        rt.record(route.endpoint, str(response.status))
        await send(send_, response)


async def _lifespan(receive: Any, send_: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send_({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send_({"type": "lifespan.shutdown.complete"})
            return
