"""HTTP client for CommCare HQ: authentication, retries, and response checks.

Retries 429 (honouring ``Retry-After``), 5xx and connection errors with
exponential backoff and jitter, up to a bound; fails at once on 401/403 with a
message naming the credential and project space; treats anything that is not a
JSON object as a malformed response. Follows only URLs on the configured
origin, so a hostile ``next`` link cannot collect the credential.

An ``OAuthCredential`` is refreshed shortly before its access token expires and
once after a 401, and ``on_refresh`` receives the renewed credential (the
runner stores it back, encrypted). A ``BearerCredential`` has no refresh token:
a 401 once it has expired is a ``TokenExpired`` error saying so.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

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
from data_explorer.loaders.errors import (
    AuthError,
    Cancelled,
    MalformedResponse,
    RequestRejected,
    RetriesExhausted,
    TransientError,
)

log = logging.getLogger(__name__)

BACKOFF_BASE = 1.0  # seconds before the first retry when the server gives no hint
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


def backoff_delay(attempt: int, retry_after: float | None, max_backoff: float, rng: random.Random) -> float:
    """Wait before retry number ``attempt`` (0-based). Pure given the rng."""
    if retry_after is not None:
        return min(retry_after, max_backoff)
    ceiling = min(max_backoff, BACKOFF_BASE * (2**attempt))
    return ceiling * (0.5 + rng.random() / 2)


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
        on_retry: Callable[[str, float], None] | None = None,
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
        self._stop = stop or threading.Event()
        self._on_retry = on_retry
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

    def get_json(self, url: str, params: dict[str, Any] | None = None, *, what: str) -> dict[str, Any]:
        """GET a JSON object, retrying transient failures; raise a LoaderError otherwise. A query in ``url``
        is kept beside ``params`` (httpx would drop it), ``params`` winning where both name a key."""
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
                return self._get_once(target, params, what)
            except TransientError as exc:
                if attempt >= self.settings.max_retries:
                    raise RetriesExhausted(
                        f"{what}: gave up after {attempt + 1} attempts; last error: {exc}. "
                        "CommCare may be rate-limiting or unavailable; run again later."
                    ) from None
                delay = backoff_delay(attempt, exc.retry_after, self.settings.max_backoff, self._rng)
                self.retries += 1
                log.info("%s: %s; retrying in %.2fs", what, exc, delay)
                if self._on_retry:
                    self._on_retry(str(exc), delay)
                if self._stop.wait(delay):  # a stop request cuts the wait short
                    raise Cancelled(f"{what}: stopped on request") from None
                attempt += 1

    def _get_once(self, url: str, params: dict[str, Any] | None, what: str, *, refreshed: bool = False) -> dict[str, Any]:
        self.requests += 1
        authorization = self._authorization()
        try:
            # streamed, so the body is ours alone: httpx keeps a read response in reference cycles, and
            # a cached body would then live until the cyclic collector runs
            with self._http.stream("GET", url, params=params, headers={"Authorization": authorization}) as response:
                body = b"".join(response.iter_bytes())
        except httpx.TimeoutException:
            raise TransientError("request timed out") from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 401 and not refreshed and isinstance(self.credential, OAuthCredential):
            self._refresh_after_401(authorization)
            return self._get_once(url, params, what, refreshed=True)
        if status in (401, 403):
            raise self._auth_error(status, what, refreshed)
        if status == 429:
            raise TransientError("rate limited (HTTP 429)", parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientError(f"server error (HTTP {status})")
        if status != 200:
            raise RequestRejected(f"{what}: CommCare answered HTTP {status}: {_snippet(body)}")
        self._worked = True
        return self._decode(body, response.headers.get("Content-Type", "no content type"), what)

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

    def _auth_error(self, status: int, what: str, refreshed: bool) -> AuthError:
        credential = self.credential
        refused = (
            f"CommCare refused {credential.describe()} for project space {self.domain!r} (HTTP {status} from {what})."
        )
        if status == 401 and isinstance(credential, BearerCredential):
            expired = self._worked or (credential.expires_at is not None and credential.expires_at <= time.time())
            if expired:
                return TokenExpired(
                    f"{refused} The access token has expired (CommCare access tokens live "
                    f"{ACCESS_TOKEN_LIFETIME // 60} minutes) and cannot be refreshed: no refresh token came with it. "
                    "Start again with a fresh token, or use an API key or a refresh token for long runs."
                )
            return AuthError(
                f"{refused} Check the token; if it has expired it cannot be refreshed, because no refresh token "
                "came with it."
            )
        if refreshed:
            return AuthError(f"{refused} It was refused even with a freshly refreshed access token; "
                             "check that the user belongs to the project space.")
        return AuthError(f"{refused} Check the credential and that the user belongs to the project space.")

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
