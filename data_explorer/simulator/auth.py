"""Who is calling: API keys, OAuth2 (authorization code with PKCE, refresh, password) and bearer tokens.

Tokens are random and live in memory; they expire by a clock that tests can
move forward (``advance``) instead of sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode, urlsplit

from data_explorer.simulator.config import SimulatorConfig, WebUser

CODE_TTL = 120.0
DEFAULT_SCOPE = "access_apis"


@dataclass(frozen=True)
class Token:
    user: WebUser
    expires: float
    scope: str
    client_id: str


@dataclass(frozen=True)
class Grant:
    user: WebUser
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str
    scope: str
    expires: float


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class Auth:
    def __init__(self, config: SimulatorConfig, clock: Callable[[], float] = time.time):
        self.config = config
        self._clock = clock
        self.offset = 0.0
        self.users: dict[str, WebUser] = {}
        for user in config.users:
            self.users[user.username.lower()] = user
            if user.email_address:
                self.users.setdefault(user.email_address.lower(), user)
        self.access: dict[str, Token] = {}
        self.refresh: dict[str, Token] = {}
        self.codes: dict[str, Grant] = {}
        self.access_of_refresh: dict[str, str] = {}

    def now(self) -> float:
        return self._clock() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def clear(self) -> None:
        for store in (self.access, self.refresh, self.codes, self.access_of_refresh):
            store.clear()

    # --- requests ---------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> WebUser | None:
        """The user an Authorization header proves, or None."""
        if not authorization:
            return None
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() == "apikey":
            username, sep, key = credential.rpartition(":")
            user = self.users.get(username.lower()) if sep else None
            if user is not None and hmac.compare_digest(user.api_key.encode(), key.encode()):
                return user
            return None
        if scheme.lower() == "bearer":
            token = self.access.get(credential)
            if token is not None and token.expires > self.now():
                return token.user
        return None

    # --- OAuth ------------------------------------------------------------------------------

    def authorize(self, params: dict[str, str]) -> str:
        """The redirect location for an authorization request, approved at once for ``username``.

        OAuthError (answered without a redirect) when the client or redirect URI is unusable.
        """
        redirect_uri, client_id = params.get("redirect_uri", ""), params.get("client_id", "")
        if not client_id:
            raise OAuthError("invalid_request", "client_id is required")
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise OAuthError("invalid_request", "redirect_uri must be an absolute http(s) URL without a fragment")
        state = params.get("state")

        def back(**values: str) -> str:
            if state is not None:
                values["state"] = state
            return redirect_uri + ("&" if parts.query else "?") + urlencode(values)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "plain" if challenge else "")
        if challenge is not None and (method not in ("S256", "plain") or not 43 <= len(challenge) <= 128):
            return back(error="invalid_request", error_description="bad code_challenge or code_challenge_method")
        user = self.users.get(params.get("username", "").lower())
        if user is None:
            return back(error="access_denied", error_description="unknown user; pass ?username=")
        code = secrets.token_urlsafe(24)
        scope = params.get("scope") or DEFAULT_SCOPE
        self.codes[code] = Grant(user, client_id, redirect_uri, challenge, method, scope, self.now() + CODE_TTL)
        return back(code=code)

    def token(self, form: dict[str, str], basic_client: str | None) -> dict[str, object]:
        """A token response for a token request; OAuthError when it is refused."""
        grant_type = form.get("grant_type", "")
        client_id = form.get("client_id") or basic_client or ""
        if grant_type == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None or grant.expires <= self.now():
                raise OAuthError("invalid_grant", "the code is unknown, used or expired")
            if client_id and client_id != grant.client_id:
                raise OAuthError("invalid_grant", "the code was issued to another client")
            if form.get("redirect_uri", grant.redirect_uri) != grant.redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
            if grant.challenge is not None and not _verifier_matches(form.get("code_verifier"), grant):
                raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
            return self._issue(grant.user, grant.scope, grant.client_id)
        if grant_type == "refresh_token":
            old = form.get("refresh_token", "")
            token = self.refresh.pop(old, None)
            if token is None or token.expires <= self.now():
                raise OAuthError("invalid_grant", "the refresh token is unknown, used or expired")
            self.access.pop(self.access_of_refresh.pop(old, ""), None)  # refreshing revokes the old access token
            return self._issue(token.user, form.get("scope") or token.scope, token.client_id)
        if grant_type == "password":
            user = self.users.get(form.get("username", "").lower())
            if user is None or not hmac.compare_digest(user.api_key.encode(), form.get("password", "").encode()):
                raise OAuthError("invalid_grant", "invalid username or password (the password is the API key)")
            return self._issue(user, form.get("scope") or DEFAULT_SCOPE, client_id)
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    def _issue(self, user: WebUser, scope: str, client_id: str) -> dict[str, object]:
        now = self.now()
        self._prune(now)
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.access[access] = Token(user, now + self.config.token_ttl, scope, client_id)
        self.refresh[refresh] = Token(user, now + self.config.refresh_ttl, scope, client_id)
        self.access_of_refresh[refresh] = access
        return {
            "access_token": access,
            "expires_in": math.ceil(self.config.token_ttl),
            "refresh_token": refresh,
            "scope": scope,
            "token_type": "Bearer",
        }

    def _prune(self, now: float) -> None:
        if len(self.access) + len(self.refresh) < 10_000:
            return
        for store in (self.access, self.refresh):
            for key in [k for k, t in store.items() if t.expires <= now]:
                del store[key]


def _verifier_matches(verifier: str | None, grant: Grant) -> bool:
    if not verifier or not 43 <= len(verifier) <= 128:
        return False
    if grant.method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    else:
        expected = verifier
    return hmac.compare_digest(expected.encode(), (grant.challenge or "").encode())


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge): a helper for clients and tests."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge
