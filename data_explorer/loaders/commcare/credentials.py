"""CommCare credentials, the Authorization header they make, and OAuth refresh. Never printed.

Three kinds:

- ``ApiKeyCredential``: a user's API key; does not expire.
- ``BearerCredential``: an OAuth access token passed through without a refresh
  token (an MCP caller's, or ``COMMCARE_OAUTH_TOKEN`` alone). CommCare access
  tokens live 15 minutes; this one cannot be renewed.
- ``OAuthCredential``: an access token with its refresh token and the OAuth
  client they were issued to; ``refresh_oauth`` renews it at
  ``{base}/oauth/token/`` (grant ``refresh_token``).

``repr`` and ``describe()`` never show a secret; ``describe()`` says which
credential it is and where it came from, for error messages.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import httpx

from data_explorer.config import CommCareSettings
from data_explorer.loaders.errors import AuthError, TransientError

ACCESS_TOKEN_LIFETIME = 15 * 60  # what CommCare gives an access token, for messages


class TokenExpired(AuthError):
    """An OAuth access token expired and there is no refresh token to renew it."""

    code = "AUTH_TOKEN_EXPIRED"


class RefreshRefused(AuthError):
    """CommCare refused to renew an access token (refresh token expired, revoked or already used)."""


@dataclass(frozen=True)
class ApiKeyCredential:
    username: str
    api_key: str = field(repr=False)
    source: str = field(default="COMMCARE_USERNAME / COMMCARE_API_KEY", compare=False)

    kind: ClassVar[str] = "api_key"

    def header(self) -> str:
        return f"ApiKey {self.username}:{self.api_key}"

    def describe(self) -> str:
        return f"the API key of {self.username} ({self.source})"


@dataclass(frozen=True)
class BearerCredential:
    """An OAuth access token without a refresh token: usable until it expires, never renewed."""

    token: str = field(repr=False)
    expires_at: float | None = None
    """Unix time the token expires, when known (CommCare does not say for a token it did not just issue)."""
    username: str | None = None
    source: str = field(default="COMMCARE_OAUTH_TOKEN", compare=False)

    kind: ClassVar[str] = "oauth"

    def header(self) -> str:
        return f"Bearer {self.token}"

    def describe(self) -> str:
        whose = f" of {self.username}" if self.username else ""
        return f"the OAuth access token{whose} ({self.source})"


@dataclass(frozen=True)
class OAuthCredential:
    """An OAuth access token with the refresh token that renews it."""

    access_token: str = field(repr=False)
    """Empty when only a refresh token is known: the first request refreshes."""
    refresh_token: str = field(repr=False)
    expires_at: float | None = None
    """Unix time the access token expires; None when unknown (then it is refreshed after a 401)."""
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    username: str | None = None
    source: str = field(default="COMMCARE_OAUTH_TOKEN / COMMCARE_OAUTH_REFRESH_TOKEN", compare=False)

    kind: ClassVar[str] = "oauth"

    def header(self) -> str:
        return f"Bearer {self.access_token}"

    def describe(self) -> str:
        whose = f" of {self.username}" if self.username else ""
        return f"the OAuth token{whose} ({self.source})"

    def due(self, now: float, margin: float) -> bool:
        """True when the access token is missing or expires within ``margin`` seconds."""
        return not self.access_token or (self.expires_at is not None and self.expires_at - now <= margin)


Credential = ApiKeyCredential | BearerCredential | OAuthCredential


def credential_from_settings(cc: CommCareSettings) -> Credential:
    if cc.api_key:
        return ApiKeyCredential(cc.username or "", cc.api_key)
    if cc.oauth_refresh_token:
        return OAuthCredential(
            cc.oauth_token or "", cc.oauth_refresh_token, None, cc.oauth_client_id, cc.oauth_client_secret
        )
    return BearerCredential(cc.oauth_token or "")


def token_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/oauth/token/"


def refresh_oauth(
    http: httpx.Client, base_url: str, credential: OAuthCredential, *, clock: Callable[[], float] = time.time
) -> tuple[OAuthCredential, float | None]:
    """Renew the access token: (the renewed credential, the new token's lifetime in seconds if given).

    ``RefreshRefused`` when CommCare refuses the refresh token or the client; ``TransientError``
    when it cannot be reached or answers 429/5xx (the caller's retry loop applies).
    """
    form = {"grant_type": "refresh_token", "refresh_token": credential.refresh_token}
    if credential.client_id:
        form["client_id"] = credential.client_id
    if credential.client_secret:
        form["client_secret"] = credential.client_secret
    try:
        response = http.post(token_url(base_url), data=form, headers={"Accept": "application/json"})
    except httpx.TimeoutException:
        raise TransientError("token refresh timed out") from None
    except httpx.TransportError as exc:
        raise TransientError(f"token refresh: connection failed ({type(exc).__name__})") from None
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientError(f"token refresh: CommCare answered HTTP {status}")
    body = _json_object(response.content)
    if status != 200:
        reason = str(body.get("error") or f"HTTP {status}")[:60]
        raise RefreshRefused(
            f"CommCare refused to refresh {credential.describe()} ({reason}): the refresh token has expired "
            "(they live 15 days), was revoked or was already used, or the OAuth client "
            "(COMMCARE_OAUTH_CLIENT_ID / COMMCARE_OAUTH_CLIENT_SECRET) is wrong. Sign in to CommCare again."
        )
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise TransientError("token refresh: CommCare's answer has no access_token")
    refresh = body.get("refresh_token")
    lifetime = body.get("expires_in")
    lifetime = float(lifetime) if isinstance(lifetime, (int, float)) and not isinstance(lifetime, bool) else None
    renewed = dataclasses.replace(
        credential,
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else credential.refresh_token,
        expires_at=clock() + lifetime if lifetime is not None else None,
    )
    return renewed, lifetime


def _json_object(content: bytes) -> dict:
    try:
        data = json.loads(content or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
