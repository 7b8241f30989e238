"""HTTP client for CommCare HQ: authentication, retries, and response checks.

Retries 429, 5xx and connection errors up to a bound. A 429 with ``Retry-After``
waits as told, up to ``COMMCARE_MAX_RETRY_AFTER`` (a longer wait fails at once);
without it, and on other failures, exponential backoff with jitter, a 429 waiting
at least its share of a minute so the retries outlast a per-minute quota. Every
wait is announced (``on_wait``, again every few seconds) and cut short by ``stop``.
Fails at once on 401/403 with a message naming the credential, the project space
and what is missing (``refusals``); treats anything that is not a JSON object as a
malformed response. A ``next`` link is followed by its path and query on
``COMMCARE_BASE_URL``, whatever host it names, so the credential goes nowhere else.

An ``OAuthCredential`` is refreshed shortly before its access token expires and
once after a 401, and ``on_refresh`` receives the renewed credential (the
runner stores it back, encrypted). A ``BearerCredential`` has no refresh token:
a 401 once it has expired is a ``TokenExpired`` error saying so.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit, urlunsplit

import httpx

from data_explorer.config import CommCareSettings
from data_explorer.loaders.commcare.credentials import (
    ACCESS_TOKEN_LIFETIME,
    BearerCredential,
    Credential,
    OAuthCredential,
    TokenExpired,
    refresh_oauth,
)
from data_explorer.loaders import json_codec
from data_explorer.loaders.commcare import refusals
from data_explorer.loaders.errors import (
    AuthError,
    Cancelled,
    MalformedResponse,
    RateLimited,
    RequestRejected,
    RetriesExhausted,
    TransientError,
)

log = logging.getLogger(__name__)

BACKOFF_BASE = 1.0  # seconds before the first retry when the server gives no hint
QUOTA_WINDOW = 60.0  # seconds: retries of a 429 without Retry-After span at least this (a per-minute quota)
ANNOUNCE_EVERY = 5.0  # seconds between announcements of a long wait
REFRESH_MARGIN = 60.0  # refresh an OAuth access token this many seconds before it expires


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_delay(attempt: int, error: TransientError, retries: int, max_backoff: float, rng: random.Random) -> float:
    """Wait before retry number ``attempt`` (0-based) of at most ``retries``. Pure given the rng.

    A Retry-After is waited out as told (the caller bounds it by COMMCARE_MAX_RETRY_AFTER). Otherwise
    exponential backoff with jitter, at most ``max_backoff``; a 429 without Retry-After waits at least
    its share of QUOTA_WINDOW, so that CommCare's per-minute quota has reset before the last retry.
    """
    if error.retry_after is not None:
        return error.retry_after
    ceiling = min(max_backoff, BACKOFF_BASE * (2**attempt))
    delay = ceiling * (0.5 + rng.random() / 2)
    if isinstance(error, RateLimited):
        delay = max(delay, min(max_backoff, QUOTA_WINDOW / max(1, retries)))
    return delay


def waiting_message(seconds: float, error: TransientError, what: str, retry: int, retries: int) -> str:
    """The run's progress message while it waits before a retry."""
    shown = f"{math.ceil(seconds)} s" if seconds >= 1 else f"{seconds:.1f} s"
    reason = "CommCare's rate limit for this project space" if isinstance(error, RateLimited) else str(error)
    return f"waiting {shown}: {reason} ({what}, retry {retry} of {retries})"


def _snippet(content: bytes, limit: int = 120) -> str:
    text = content[:limit].decode("utf-8", errors="replace")
    return " ".join(text.split())


class CommCareClient:
    def __init__(
        self,
        settings: CommCareSettings,
        credential: Credential,
        domain: str,
        *,
        stop: threading.Event | None = None,
        on_wait: Callable[[str], None] | None = None,
        on_refresh: Callable[[OAuthCredential], None] | None = None,
        refresh_margin: float = REFRESH_MARGIN,
    ):
        self.settings = settings
        self.credential: Credential = credential
        self.domain = domain
        self._on_refresh = on_refresh
        self._refresh_margin = refresh_margin
        self._lifetime: float | None = None  # of the access token last issued to us, once known
        self._credential_lock = threading.Lock()
        self._worked = False  # a request with the current credential succeeded
        self.refreshes = 0
        self._origin = urlsplit(settings.base_url)[:2]
        # what a followed link's path must begin with: this project space's API under the base address
        self._api_prefix = urlsplit(settings.base_url).path.rstrip("/") + f"/a/{domain}/api/"
        self._stop = stop or threading.Event()
        self.on_wait = on_wait
        self._rng = random.Random()
        self.requests = 0
        self.retries = 0
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.timeout),
            follow_redirects=False,
            headers={"Accept": "application/json"},  # Authorization goes per request: it may be refreshed
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CommCareClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def resolve(self, url: str) -> str:
        """An absolute URL for a path or link, refusing any other origin."""
        absolute = urljoin(self.settings.base_url + "/", url)
        parts = urlsplit(absolute)
        if parts[:2] != self._origin:
            raise MalformedResponse(
                f"CommCare returned a link to another server ({parts.scheme}://{parts.netloc}); "
                f"only {self.settings.base_url} is trusted with the credential"
            )
        return absolute

    def follow(self, link: str, what: str) -> str:
        """The URL to request for a ``next`` link: its path and query on COMMCARE_BASE_URL.

        CommCare builds absolute links from its own base address, which may name another host of the
        same server (``commcarehq.org`` for ``www.commcarehq.org``). Whatever host a link names, the
        request, and the credential with it, go to COMMCARE_BASE_URL, and only to this project
        space's API there.
        """
        parts = urlsplit(link)
        segments = unquote(parts.path).split("/")
        if not parts.path.startswith(self._api_prefix) or "." in segments or ".." in segments:
            raise MalformedResponse(
                f"{what}: CommCare's next link leads outside project space {self.domain!r}'s API "
                f"({_snippet(link.encode(), 160)}); not followed"
            )
        return urlunsplit(self._origin + (parts.path, parts.query, ""))

    def get_json(self, url: str, params: dict[str, Any] | None = None, *, what: str) -> dict[str, Any]:
        """GET a JSON object, retrying transient failures; raise a LoaderError otherwise. A query in ``url``
        is kept beside ``params`` (httpx would drop it), ``params`` winning where both name a key."""
        return self._request_json("GET", url, params, None, what)

    def post_json(self, url: str, body: dict[str, Any], *, what: str) -> dict[str, Any]:
        """POST a JSON body to a read-only endpoint (a bulk fetch) and get a JSON object back, as get_json."""
        return self._request_json("POST", url, None, body, what)

    def get_document(self, url: str, *, what: str, limit: int) -> bytes:
        """GET a document that is not JSON (a form's XForm), retried and refused as get_json; MalformedResponse
        when it is longer than ``limit`` bytes."""
        def checked(body: bytes, kind: str, what: str) -> bytes:
            if len(body) > limit:
                raise MalformedResponse(f"{what}: the document is {len(body):,} bytes, more than the {limit:,} read")
            return body

        return self._request("GET", url, None, None, what, checked)

    def _request_json(self, method: str, url: str, params: dict[str, Any] | None, body: dict[str, Any] | None,
                      what: str) -> dict[str, Any]:
        return self._request(method, url, params, body, what, self._decode)

    def _request(self, method: str, url: str, params: dict[str, Any] | None, body: dict[str, Any] | None,
                 what: str, decode: Callable[[bytes, str, str], Any]) -> Any:
        target = self.resolve(url)
        parts = urlsplit(target)
        if params is not None and parts.query:
            params = {**dict(parse_qsl(parts.query, keep_blank_values=True)), **params}
            target = urlunsplit(parts._replace(query=""))
        attempt = 0
        while True:
            if self._stop.is_set():
                raise Cancelled(f"{what}: stopped on request")
            try:
                return self._send_once(method, target, params, body, what, decode)
            except TransientError as exc:
                delay = self._retry_delay(exc, attempt, what)
                self.retries += 1
                attempt += 1
                log.info("%s: %s; retrying in %.2fs", what, exc, delay)
                self._wait(delay, exc, what, attempt)

    def _retry_delay(self, exc: TransientError, attempt: int, what: str) -> float:
        """How long to wait before retrying, or RetriesExhausted when no retry is left or worth it."""
        settings = self.settings
        if attempt >= settings.max_retries:
            raise RetriesExhausted(
                f"{what}: gave up after {attempt + 1} attempts; last error: {exc}. "
                "CommCare may be rate-limiting or unavailable; run again later."
            ) from None
        if exc.retry_after is not None and exc.retry_after > settings.max_retry_after:
            raise RetriesExhausted(
                f"{what}: CommCare's rate limit for project space {self.domain!r} asks to wait "
                f"{math.ceil(exc.retry_after)} s (Retry-After), more than COMMCARE_MAX_RETRY_AFTER "
                f"({settings.max_retry_after:g} s). Run again after that, or raise COMMCARE_MAX_RETRY_AFTER."
            ) from None
        return retry_delay(attempt, exc, settings.max_retries, settings.max_backoff, self._rng)

    def _wait(self, delay: float, exc: TransientError, what: str, retry: int) -> None:
        """Wait ``delay`` seconds, saying so every ANNOUNCE_EVERY seconds; a stop request cuts it short."""
        deadline, left = time.monotonic() + delay, delay
        while left > 0:
            self._announce(waiting_message(left, exc, what, retry, self.settings.max_retries))
            if self._stop.wait(min(left, ANNOUNCE_EVERY)):
                raise Cancelled(f"{what}: stopped on request") from None
            left = deadline - time.monotonic()

    def _announce(self, message: str) -> None:
        if self.on_wait is None:
            return
        try:
            self.on_wait(message)
        except Exception as exc:  # telling about the wait must not end the run
            log.warning("could not report a wait (%s: %s)", type(exc).__name__, exc)

    def _send_once(self, method: str, url: str, params: dict[str, Any] | None, payload: dict[str, Any] | None, what: str,
                   decode: Callable[[bytes, str, str], Any], *, refreshed: bool = False) -> Any:
        self.requests += 1
        authorization = self._authorization()
        try:
            # streamed, so the body is ours alone: httpx keeps a read response in reference cycles, and
            # a cached body would then live until the cyclic collector runs
            with self._http.stream(method, url, params=params, json=payload, headers={"Authorization": authorization}) as response:
                body = b"".join(response.iter_bytes())
        except httpx.TimeoutException:
            raise TransientError("request timed out") from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 401 and not refreshed and isinstance(self.credential, OAuthCredential):
            self._refresh_after_401(authorization)
            return self._send_once(method, url, params, payload, what, decode, refreshed=True)
        kind = response.headers.get("Content-Type", "no content type")
        upgrade_page = status == 200 and "html" in kind.lower() and refusals.says_plan_lacks_api(body)
        if status in (401, 402, 403) or upgrade_page:
            raise self._auth_error(status, what, refreshed, body, url)
        if status == 429:
            raise RateLimited("rate limited (HTTP 429)", parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientError(f"server error (HTTP {status})")
        if status != 200:
            raise RequestRejected(f"{what}: CommCare answered HTTP {status}: {_snippet(body)}")
        self._worked = True
        return decode(body, kind, what)

    # --- authentication ------------------------------------------------------------------------

    def _authorization(self) -> str:
        """The Authorization header for the next request, refreshing an OAuth token that is about to expire."""
        with self._credential_lock:
            credential = self.credential
            if isinstance(credential, OAuthCredential):
                margin = self._refresh_margin
                if self._lifetime is not None:
                    margin = min(margin, self._lifetime / 2)  # a short-lived token is not refreshed on every request
                if credential.due(time.time(), margin):
                    self._refresh(credential, "it expires soon" if credential.access_token else "no access token yet")
            return self.credential.header()

    def _refresh_after_401(self, used: str) -> None:
        with self._credential_lock:
            if self.credential.header() != used:
                return  # another thread refreshed meanwhile
            self._refresh(self.credential, "CommCare answered 401")

    def _refresh(self, credential: OAuthCredential, why: str) -> None:
        """Renew the access token (the lock is held). RefreshRefused or TransientError when it cannot be."""
        log.info("refreshing %s: %s", credential.describe(), why)
        renewed, lifetime = refresh_oauth(self._http, self.settings.base_url, credential)
        self.credential, self._lifetime, self._worked = renewed, lifetime, False
        self.refreshes += 1
        if self._on_refresh is not None:
            try:
                self._on_refresh(renewed)
            except Exception as exc:  # the run goes on with the renewed token in memory
                log.warning("could not keep the refreshed OAuth token (%s); a resumed run may need a new sign-in",
                            type(exc).__name__)

    def _auth_error(self, status: int, what: str, refreshed: bool, body: bytes, url: str) -> AuthError:
        credential = self.credential
        refused = (
            f"CommCare refused {credential.describe()} for project space {self.domain!r} (HTTP {status} from {what})."
        )
        said = refusals.commcare_said(body)
        if status == 402 or refusals.says_plan_lacks_api(body):
            return AuthError(refusals.plan_lacks_api(refused, self.domain, said))
        if status == 403:
            return AuthError(refusals.forbidden(refused, urlsplit(url).path, self.domain, said))
        if isinstance(credential, BearerCredential):
            expired = self._worked or (credential.expires_at is not None and credential.expires_at <= time.time())
            if expired:
                return TokenExpired(
                    f"{refused} The access token has expired (CommCare access tokens live "
                    f"{ACCESS_TOKEN_LIFETIME // 60} minutes) and cannot be refreshed: no refresh token came with it. "
                    "Start again with a fresh token, or use an API key or a refresh token for long runs."
                )
            return AuthError(
                f"{refusals.unauthorized(refused, self.domain, said)} If the token has expired it cannot be "
                "refreshed: no refresh token came with it."
            )
        if refreshed:
            refused += " It was refused even with a freshly refreshed access token."
        return AuthError(refusals.unauthorized(refused, self.domain, said))

    @staticmethod
    def _decode(body: bytes, kind: str, what: str) -> dict[str, Any]:
        try:
            data = json_codec.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            detail = f"{exc.msg} at byte {exc.pos} of {len(body)}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise MalformedResponse(
                f"{what}: CommCare answered HTTP 200 with something that is not JSON ({kind}; {detail}; "
                f"begins {_snippet(body, 60)!r}). The response may be an error page or cut short."
            ) from None
        if not isinstance(data, dict):
            raise MalformedResponse(f"{what}: expected a JSON object, got {type(data).__name__}")
        return data
