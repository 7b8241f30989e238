"""Who is calling the gateway, as CommCare says: verified tokens, a short cache, the stdio identity.

Over streamable HTTP a caller sends ``Authorization: Bearer <CommCare OAuth access
token>`` or ``Authorization: ApiKey user:key`` (``ApiKeyHeaderMiddleware`` turns
the latter into ``Bearer ApiKey user:key`` for the SDK's bearer middleware).
``CommCareAuthenticator`` verifies the token by calling CommCare's identity
endpoint and ``user_domains`` with it; the caller's tenants are the project
spaces returned. Results are cached for ``DATA_EXPLORER_AUTH_CACHE_SECONDS``
under a SHA-256 of the token (never the token), refusals and outages for a few
seconds, so a bad token cannot hammer CommCare; concurrent checks of one token
share one round trip.

- refused (401/403): ``None``; the SDK answers 401.
- CommCare unreachable, 429, 5xx or an unexpected answer: ``AuthUnavailable``;
  behind ``ApiKeyHeaderMiddleware`` the caller gets 503 with ``Retry-After``.

``user_domains`` leaves out project spaces whose plan lacks CommCare's integration
privilege, so a member of one sees no tenant there: ``member_of`` asks the project
space's own API instead (one Case API v2 request for one case, made with the caller's
credential), and remembers the answer like an identity, per credential and project space.

The SDK's side (its token verifier, the caller of the current request, the
header middleware) is in ``http_auth``. Over stdio the caller is whoever the
gateway was started as: ``identity_from_settings``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Hashable
from urllib.parse import quote, urljoin, urlsplit

import httpx

from data_explorer.config import Settings, SettingsError
from data_explorer.loaders.commcare.credentials import (
    ApiKeyCredential,
    BearerCredential,
    Credential,
    OAuthCredential,
    RefreshRefused,
    credential_from_settings,
    refresh_oauth,
)
from data_explorer.loaders.errors import TransientError
from data_explorer.warehouse.naming import InvalidDomain, validate_domain

log = logging.getLogger(__name__)

IDENTITY_PATH = "/api/v0.5/identity/"
USER_DOMAINS_PATH = "/api/user_domains/v1/"
MEMBERSHIP_PATH = "/a/{domain}/api/case/v2/"  # asked for one case: answered only to members with API access
DEFAULT_CACHE_SECONDS = 60.0
NEGATIVE_CACHE_SECONDS = 5.0  # refusals and outages are remembered this long (at most the cache time)
MAX_CACHE_ENTRIES = 10_000
MAX_DOMAIN_PAGES = 50  # of 100 project spaces each
AUTH_TIMEOUT = 10.0  # seconds; verification holds up a caller's request
MAX_TOKEN_LENGTH = 4096
RETRY_AFTER_SECONDS = 5
CALLER = "given by the MCP caller"  # the ``source`` of a caller's credential, for error messages


class AuthUnavailable(Exception):
    """CommCare could not verify a credential (unreachable, rate limited, 5xx, unexpected answer).

    Not the caller's fault and not a refusal: answer 503 / try again later, never 401.
    """


class CredentialRefused(SettingsError):
    """CommCare refused the credential the gateway was started with; the message names the setting."""


@dataclass(frozen=True)
class Identity:
    """A verified CommCare user and the project spaces (tenants) they belong to."""

    username: str
    domains: tuple[str, ...]
    credential: Credential = field(repr=False, compare=False)
    """The caller's own credential, so runs they start load with their access. Never shown."""
    expires_at: float | None = None
    """Unix time the credential expires, when known (an API key does not; CommCare does not say for a token)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", tuple(sorted(set(self.domains))))

    def member_of(self, domain: str) -> bool:
        return domain in self.domains


def token_key(token: str) -> str:
    """The cache key of a token: its SHA-256, so the cache never holds the token itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def credential_from_token(token: str) -> Credential | None:
    """The credential a bearer token stands for: ``ApiKey user:key`` (any case) or an OAuth access token.

    None for something that cannot be a credential (empty, malformed ``ApiKey``, spaces or control
    characters, absurdly long); such tokens are refused without asking CommCare.
    """
    text = token.strip()
    if not text or len(text) > MAX_TOKEN_LENGTH or not text.isascii() or not text.isprintable():
        return None
    scheme, _, rest = text.partition(" ")
    if scheme.lower() == "apikey":
        username, sep, key = rest.strip().rpartition(":")
        if not sep or not username.strip() or not key or " " in key:
            return None
        return ApiKeyCredential(username.strip(), key, source=CALLER)
    if scheme.lower() == "bearer":  # "Bearer Bearer x": tolerate a client that doubled the scheme
        text = rest.strip()
    if not text or " " in text:
        return None
    return BearerCredential(text, source=CALLER)


@dataclass
class _Entry:
    until: float
    value: Any  # an Identity or None (refused); a membership's bool
    unavailable: str | None = None  # the message of an AuthUnavailable to raise again


class _ShortCache:
    """Entries kept until their deadline; past ``max_entries`` the least recently used go first."""

    def __init__(self, max_entries: int, clock: Callable[[], float]):
        self.entries: collections.OrderedDict[Hashable, _Entry] = collections.OrderedDict()
        self.max_entries, self._clock = max_entries, clock

    def fresh(self, key: Hashable) -> _Entry | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.until <= self._clock():
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return entry

    def remember(self, key: Hashable, entry: _Entry) -> None:
        if entry.until <= self._clock():
            return  # a cache time of 0: nothing is kept
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)


class CommCareAuthenticator:
    """Verifies tokens against CommCare (identity + ``user_domains``), with a bounded, short cache."""

    def __init__(
        self,
        settings: Settings,
        *,
        cache_seconds: float | None = None,
        negative_seconds: float = NEGATIVE_CACHE_SECONDS,
        max_entries: int = MAX_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        timeout: float | None = None,
    ):
        base_url = settings["COMMCARE_BASE_URL"]
        if not base_url:
            raise SettingsError(
                "COMMCARE_BASE_URL is not set: the gateway verifies every caller against CommCare; "
                "set it to your CommCare HQ address (e.g. https://www.commcarehq.org)."
            )
        self.base_url: str = base_url.rstrip("/")
        self._origin = urlsplit(self.base_url)[:2]
        configured = settings["DATA_EXPLORER_AUTH_CACHE_SECONDS"]
        if cache_seconds is None:
            cache_seconds = DEFAULT_CACHE_SECONDS if configured is None else configured
        self.cache_seconds = float(cache_seconds)
        self.negative_seconds = min(float(negative_seconds), self.cache_seconds)
        self.max_entries = max_entries
        self._clock = clock
        http_timeout = settings["COMMCARE_HTTP_TIMEOUT"]
        self.timeout = timeout if timeout is not None else min(AUTH_TIMEOUT, http_timeout or AUTH_TIMEOUT)
        self._identities = _ShortCache(max_entries, clock)
        self._cache = self._identities.entries  # token hash -> entry
        # refused tokens apart: random tokens by the thousand cannot push verified callers out of the cache
        self._refusals = _ShortCache(max_entries, clock)
        self._memberships = _ShortCache(max_entries, clock)  # (credential hash, project space) -> entry
        self._inflight: dict[Hashable, asyncio.Future] = {}
        self.verifications = 0  # round trips to CommCare (each an identity call plus user_domains pages)
        self.membership_checks = 0  # requests to a project space's API by member_of

    # --- the cache -----------------------------------------------------------------------------

    def cached(self, token: str) -> Identity | None:
        """The identity verified for this token, if still fresh in the cache; never calls CommCare."""
        entry = self._identities.fresh(token_key(token))
        return entry.value if entry is not None else None

    def forget(self, token: str) -> None:
        self._cache.pop(token_key(token), None)
        self._refusals.entries.pop(token_key(token), None)

    async def _remembered(
        self, cache: _ShortCache, key: Hashable, work: Callable[[], Awaitable[Any]], ttl: Callable[[Any], float],
        refusals: _ShortCache | None = None,
    ) -> Any:
        """A fresh answer from ``cache``, else ``work()``'s, remembered for ``ttl(answer)`` seconds (an
        AuthUnavailable for the negative time); a None answer or AuthUnavailable in ``refusals`` when given.
        Concurrent askers of one key share one ``work()``."""
        negative = refusals or cache
        entry = cache.fresh(key) or (refusals.fresh(key) if refusals is not None else None)
        if entry is not None:
            if entry.unavailable is not None:
                raise AuthUnavailable(entry.unavailable)
            return entry.value

        async def work_and_remember() -> Any:
            try:
                value = await work()
            except AuthUnavailable as exc:
                negative.remember(key, _Entry(self._clock() + self.negative_seconds, None, str(exc)))
                raise
            (cache if value is not None else negative).remember(key, _Entry(self._clock() + ttl(value), value))
            return value

        loop = asyncio.get_running_loop()
        pending = self._inflight.get(key)
        if pending is None or pending.get_loop() is not loop:
            pending = loop.create_task(work_and_remember())
            self._inflight[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(pending)

    def _settled(self, key: Hashable, done: asyncio.Future) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failure nobody awaited is not reported as unhandled

    # --- verification --------------------------------------------------------------------------

    async def authenticate(self, token: str) -> Identity | None:
        """The identity a token proves; None when CommCare refuses it; AuthUnavailable when it cannot say."""

        async def verify() -> Identity | None:
            credential = credential_from_token(token)
            if credential is None:
                log.info("refused a malformed bearer token without asking CommCare")
                return None
            return await self.verify(credential)

        def ttl(identity: Identity | None) -> float:
            return self.cache_seconds if identity is not None else self.negative_seconds

        return await self._remembered(self._identities, token_key(token), verify, ttl, self._refusals)

    async def member_of(self, credential: Credential, domain: str) -> bool:
        """Whether CommCare lets ``credential`` read project space ``domain``'s data, for a project space
        ``user_domains`` did not list. One request with that credential, its answer (yes or no)
        remembered for the cache time per credential and project space; AuthUnavailable when CommCare
        cannot say (remembered for a few seconds)."""
        try:
            validate_domain(domain)
        except InvalidDomain:
            return False  # never a request for a name that cannot be a project space

        async def check() -> bool:
            self.membership_checks += 1
            url = self.base_url + MEMBERSHIP_PATH.format(domain=quote(domain, safe=""))
            headers = {"Authorization": credential.header(), "Accept": "application/json"}
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, headers=headers) as http:
                response = await self._request(http, url, {"limit": 1})
            if response.status_code in (401, 403, 404):
                log.info("CommCare did not let %s read project space %s (HTTP %d)", _what(credential), domain,
                         response.status_code)
                return False
            self._json_object(response, url)  # a 200 with a JSON object, or AuthUnavailable
            log.info("%s may read project space %s, which user_domains left out", _what(credential), domain)
            return True

        key = (token_key(credential.header()), domain)
        return await self._remembered(self._memberships, key, check, lambda member: self.cache_seconds)

    async def verify(self, credential: Credential) -> Identity | None:
        """Ask CommCare (uncached) who ``credential`` is and where they belong; None when it is refused."""
        self.verifications += 1
        headers = {"Authorization": credential.header(), "Accept": "application/json"}
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, headers=headers) as http:
            me = await self._get(http, self.base_url + IDENTITY_PATH, None)
            if me is None:
                log.info("CommCare refused %s", _what(credential))
                return None
            username = me.get("username")
            if not isinstance(username, str) or not username:
                raise AuthUnavailable(f"CommCare at {self.base_url} answered the identity request without a username")
            domains = await self._domains(http)
            if domains is None:
                log.info("CommCare refused %s (project spaces)", _what(credential))
                return None
        if isinstance(credential, (BearerCredential, OAuthCredential)):
            credential = dataclasses.replace(credential, username=username)
        log.info("verified CommCare user %s: %d project space(s)", username, len(domains))
        expires_at = getattr(credential, "expires_at", None)
        return Identity(username, tuple(domains), credential, expires_at)

    async def _domains(self, http: httpx.AsyncClient) -> list[str] | None:
        domains: list[str] = []
        url, params = self.base_url + USER_DOMAINS_PATH, {"limit": 100}
        for _ in range(MAX_DOMAIN_PAGES):
            page = await self._get(http, url, params)
            if page is None:
                return None
            objects = page.get("objects")
            if not isinstance(objects, list):
                raise AuthUnavailable(f"CommCare at {self.base_url} answered user_domains without an 'objects' list")
            for item in objects:
                name = item.get("domain_name") if isinstance(item, dict) else None
                if isinstance(name, str) and name:
                    domains.append(name)
            meta = page.get("meta") if isinstance(page.get("meta"), dict) else {}
            following = meta.get("next")
            if not objects or not isinstance(following, str) or not following:
                return domains
            url, params = urljoin(self.base_url + "/", following), None  # CommCare's next is relative
        log.warning("user_domains has more than %d pages; the caller's other project spaces are ignored",
                    MAX_DOMAIN_PAGES)
        return domains

    async def _get(self, http: httpx.AsyncClient, target: str, params: dict[str, Any] | None) -> dict[str, Any] | None:
        """GET a JSON object from CommCare; None on 401/403; AuthUnavailable for anything else unexpected."""
        response = await self._request(http, target, params)
        if response.status_code in (401, 403):
            return None
        return self._json_object(response, target)

    async def _request(self, http: httpx.AsyncClient, target: str, params: dict[str, Any] | None) -> httpx.Response:
        """GET ``target`` on CommCare (never elsewhere); AuthUnavailable when it cannot be asked."""
        if urlsplit(target)[:2] != self._origin:
            raise AuthUnavailable(f"CommCare at {self.base_url} sent a link to another server; not followed")
        try:
            return await http.get(target, params=params)
        except httpx.TimeoutException:
            raise AuthUnavailable(f"CommCare at {self.base_url} did not answer {urlsplit(target).path} in time") from None
        except httpx.HTTPError as exc:  # connection refused or dropped, protocol and decoding errors
            raise AuthUnavailable(f"CommCare at {self.base_url} could not be reached ({type(exc).__name__})") from None

    def _json_object(self, response: httpx.Response, target: str) -> dict[str, Any]:
        """The JSON object of a 200; AuthUnavailable for any other answer."""
        status, what = response.status_code, urlsplit(target).path
        if status != 200:
            hint = "" if status == 429 or status >= 500 else "; check COMMCARE_BASE_URL"
            raise AuthUnavailable(f"CommCare at {self.base_url} answered HTTP {status} to {what}{hint}")
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise AuthUnavailable(f"CommCare at {self.base_url} answered {what} with something that is not a JSON object")
        return data


def _what(credential: Credential) -> str:
    """A credential named for the log: whose, never its value."""
    if isinstance(credential, ApiKeyCredential):
        return f"the API key of {credential.username}"
    return "an OAuth access token"


# --- stdio: the identity the gateway was started with ------------------------------------------


async def identity_from_settings(settings: Settings) -> Identity:
    """Verify the configured credential (``COMMCARE_USERNAME`` + ``COMMCARE_API_KEY``, or
    ``COMMCARE_OAUTH_TOKEN`` with an optional ``COMMCARE_OAUTH_REFRESH_TOKEN``).

    CredentialRefused (a SettingsError naming the setting) when CommCare refuses it;
    AuthUnavailable when CommCare cannot be asked.
    """
    cc = settings.require_commcare()
    credential = credential_from_settings(cc)
    authenticator = CommCareAuthenticator(settings, cache_seconds=0)
    try:
        if isinstance(credential, OAuthCredential) and not credential.access_token:
            credential = await _refreshed(authenticator.base_url, credential)
        identity = await authenticator.verify(credential)
        if identity is None and isinstance(credential, OAuthCredential):
            credential = await _refreshed(authenticator.base_url, credential)
            identity = await authenticator.verify(credential)
    except AuthUnavailable as exc:
        raise AuthUnavailable(f"{exc}. Check COMMCARE_BASE_URL and that CommCare is up.") from None
    if identity is None:
        if isinstance(credential, ApiKeyCredential):
            fix = "check COMMCARE_USERNAME and COMMCARE_API_KEY (the key must belong to that user)"
        elif isinstance(credential, OAuthCredential):
            fix = "check COMMCARE_OAUTH_TOKEN and COMMCARE_OAUTH_REFRESH_TOKEN, or sign in again"
        else:
            fix = ("COMMCARE_OAUTH_TOKEN may have expired (access tokens live 15 minutes); set a fresh one, "
                   "or COMMCARE_OAUTH_REFRESH_TOKEN with COMMCARE_OAUTH_CLIENT_ID, or use an API key")
        raise CredentialRefused(f"CommCare at {authenticator.base_url} refused {credential.describe()}: {fix}.")
    return identity


async def _refreshed(base_url: str, credential: OAuthCredential) -> OAuthCredential:
    def refresh() -> OAuthCredential:
        with httpx.Client(timeout=AUTH_TIMEOUT, follow_redirects=False) as http:
            return refresh_oauth(http, base_url, credential)[0]

    try:
        return await asyncio.to_thread(refresh)
    except RefreshRefused as exc:
        raise CredentialRefused(f"{exc} (COMMCARE_OAUTH_REFRESH_TOKEN)") from None
    except TransientError as exc:
        raise AuthUnavailable(f"CommCare at {base_url} could not refresh the token ({exc})") from None


__all__ = [
    "AuthUnavailable",
    "CommCareAuthenticator",
    "CredentialRefused",
    "Identity",
    "credential_from_token",
    "identity_from_settings",
    "token_key",
]
