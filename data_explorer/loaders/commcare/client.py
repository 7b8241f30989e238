"""HTTP client for CommCare HQ: authentication, retries, and response checks.

Retries 429 (honouring ``Retry-After``), 5xx and connection errors with
exponential backoff and jitter, up to a bound; fails at once on 401/403 with a
message naming the credential and project space; treats anything that is not a
JSON object as a malformed response. Follows only URLs on the configured
origin, so a hostile ``next`` link cannot collect the credential.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import httpx

from data_explorer.config import CommCareSettings
from data_explorer.loaders.commcare.credentials import Credential
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
    ):
        self.settings = settings
        self.credential = credential
        self.domain = domain
        self._origin = urlsplit(settings.base_url)[:2]
        self._stop = stop or threading.Event()
        self._on_retry = on_retry
        self._rng = random.Random()
        self.requests = 0
        self.retries = 0
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.timeout),
            follow_redirects=False,
            headers={"Authorization": credential.header(), "Accept": "application/json"},
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
        """GET a JSON object, retrying transient failures; raise a LoaderError otherwise."""
        target = self.resolve(url)
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

    def _get_once(self, url: str, params: dict[str, Any] | None, what: str) -> dict[str, Any]:
        self.requests += 1
        try:
            response = self._http.get(url, params=params)
        except httpx.TimeoutException:
            raise TransientError("request timed out") from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status in (401, 403):
            raise AuthError(
                f"CommCare refused {self.credential.describe()} for project space {self.domain!r} "
                f"(HTTP {status} from {what}). Check the credential and that the user belongs to the project space."
            )
        if status == 429:
            raise TransientError("rate limited (HTTP 429)", parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientError(f"server error (HTTP {status})")
        if status != 200:
            raise RequestRejected(f"{what}: CommCare answered HTTP {status}: {_snippet(response.content)}")
        return self._decode(response, what)

    @staticmethod
    def _decode(response: httpx.Response, what: str) -> dict[str, Any]:
        body = response.content
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            kind = response.headers.get("Content-Type", "no content type")
            detail = f"{exc.msg} at byte {exc.pos} of {len(body)}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise MalformedResponse(
                f"{what}: CommCare answered HTTP 200 with something that is not JSON ({kind}; {detail}; "
                f"begins {_snippet(body, 60)!r}). The response may be an error page or cut short."
            ) from None
        if not isinstance(data, dict):
            raise MalformedResponse(f"{what}: expected a JSON object, got {type(data).__name__}")
        return data
