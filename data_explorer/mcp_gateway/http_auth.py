"""The MCP SDK's side of authentication over streamable HTTP.

``GatewayTokenVerifier`` is the SDK's ``TokenVerifier``, backed by the
``CommCareAuthenticator``; tools get the caller with ``await
current_identity(authenticator)``, which reuses what the verifier found for this
request. ``ApiKeyHeaderMiddleware`` sits in front of the MCP app: it lets callers
send ``Authorization: ApiKey user:key`` and turns "CommCare could not be asked"
into a 503 with ``Retry-After`` instead of the SDK's 401; and, with ``FailureLimiter``,
answers 429 to an address whose credentials keep being refused.
"""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import math
import time
from typing import Any, Callable

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from data_explorer.mcp_gateway.auth import RETRY_AFTER_SECONDS, AuthUnavailable, CommCareAuthenticator, Identity, token_key

log = logging.getLogger(__name__)
AUTH_FAILURES_PER_MINUTE = 20  # refused credentials from one address before it must wait

_verified: contextvars.ContextVar[tuple[str, Identity] | None] = contextvars.ContextVar(
    "data_explorer_verified_identity", default=None
)
_unavailable: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "data_explorer_auth_unavailable", default=None
)


class GatewayTokenVerifier:
    """The SDK's ``TokenVerifier``: a token is valid when CommCare says who it belongs to."""

    def __init__(self, authenticator: CommCareAuthenticator):
        self.authenticator = authenticator

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            identity = await self.authenticator.authenticate(token)
        except AuthUnavailable as exc:
            failures = _unavailable.get()
            if failures is None:  # no ApiKeyHeaderMiddleware to turn this into a 503: fail loudly, not 401
                raise
            log.warning("could not verify a caller: %s", exc)
            failures.append(str(exc))
            return None
        if identity is None:
            return None
        _verified.set((token_key(token), identity))
        return AccessToken(
            token=token,
            client_id=identity.username,
            scopes=[],
            expires_at=int(identity.expires_at) if identity.expires_at is not None else None,
            subject=identity.username,
            claims={"domains": list(identity.domains)},
        )


async def current_identity(authenticator: CommCareAuthenticator | None = None) -> Identity | None:
    """The verified caller of the current HTTP request, or None when there is none.

    Reuses what the verifier found for this request; otherwise the authenticator's cache (and,
    only if that expired meanwhile, one new verification). AuthUnavailable can come from the latter.
    """
    access = get_access_token()
    if access is None:
        return None
    key = token_key(access.token)
    seen = _verified.get()
    if seen is not None and seen[0] == key:
        return seen[1]
    if authenticator is None:
        return None
    return await authenticator.authenticate(access.token)


class FailureLimiter:
    """Refused credentials per client address in a sliding minute; past the limit, the address is
    answered 429 at once, so that random tokens cannot make CommCare calls at will. Bounded: the
    addresses seen longest ago are forgotten first."""

    def __init__(self, per_minute: int = AUTH_FAILURES_PER_MINUTE, clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = 10_000):
        self.per_minute, self._clock, self._max = per_minute, clock, max_addresses
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _recent(self, address: str) -> collections.deque[float]:
        seen = self._failures.setdefault(address, collections.deque())
        self._failures.move_to_end(address)
        while seen and seen[0] <= self._clock() - 60:
            seen.popleft()
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)
        return seen

    def wait(self, address: str) -> float | None:
        """Seconds until the address may try again, or None when it may now."""
        seen = self._recent(address)
        return seen[0] + 60 - self._clock() if len(seen) >= self.per_minute else None

    def failed(self, address: str) -> None:
        self._recent(address).append(self._clock())


class ApiKeyHeaderMiddleware:
    """ASGI middleware in front of the MCP app.

    - ``Authorization: ApiKey user:key`` becomes ``Authorization: Bearer ApiKey user:key``, so callers
      may send either form to the SDK's bearer authentication;
    - when CommCare could not be asked (``AuthUnavailable``), the SDK's 401 becomes a 503 with
      ``Retry-After``: the caller's credential was not refused, CommCare was away;
    - a client address whose credentials were refused ``AUTH_FAILURES_PER_MINUTE`` times in a minute
      gets 429 with ``Retry-After`` for its credentialed requests, before anything asks CommCare.
      Behind a proxy, run uvicorn with ``--proxy-headers`` so that the address is the client's.
    """

    def __init__(self, app: Any, retry_after: int = RETRY_AFTER_SECONDS, limiter: FailureLimiter | None = None):
        self.app = app
        self.retry_after = retry_after
        self.limiter = limiter or FailureLimiter()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("unknown", 0))[0]
        credentialed = any(name.lower() == b"authorization" for name, _ in scope["headers"])
        wait = self.limiter.wait(address) if credentialed else None
        if wait is not None:
            await _answer(send, 429, {"error": "too_many_requests", "error_description": (
                "too many refused credentials from this address; wait before trying again")}, max(1, math.ceil(wait)))
            return
        scope = dict(scope, headers=[_bearer(name, value) for name, value in scope["headers"]])
        failures: list[str] = []
        reset = _unavailable.set(failures)
        replaced = False

        async def send_or_replace(message: dict) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 401 and failures:
                replaced = True
                await _answer(send, 503, {
                    "error": "temporarily_unavailable",
                    "error_description": "CommCare could not be reached to verify the credential; try again shortly.",
                }, self.retry_after)
                return
            if message["type"] == "http.response.start" and message["status"] == 401 and credentialed:
                self.limiter.failed(address)
            if replaced:
                return  # the body of the 401 that was replaced
            await send(message)

        try:
            await self.app(scope, receive, send_or_replace)
        finally:
            _unavailable.reset(reset)


async def _answer(send: Any, status: int, error: dict[str, str], retry_after: int) -> None:
    body = json.dumps(error).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})


def _bearer(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    if name.lower() == b"authorization" and value[:7].lower() == b"apikey ":
        return name, b"Bearer " + value
    return name, value


__all__ = ["ApiKeyHeaderMiddleware", "FailureLimiter", "GatewayTokenVerifier", "current_identity"]
