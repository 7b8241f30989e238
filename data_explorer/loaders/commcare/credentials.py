"""CommCare credentials and the Authorization header they make. Never printed."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_explorer.config import CommCareSettings


@dataclass(frozen=True)
class ApiKeyCredential:
    username: str
    api_key: str = field(repr=False)

    def header(self) -> str:
        return f"ApiKey {self.username}:{self.api_key}"

    def describe(self) -> str:
        return f"the API key of {self.username} (COMMCARE_USERNAME / COMMCARE_API_KEY)"


@dataclass(frozen=True)
class BearerCredential:
    token: str = field(repr=False)

    def header(self) -> str:
        return f"Bearer {self.token}"

    def describe(self) -> str:
        return "the OAuth access token (COMMCARE_OAUTH_TOKEN)"


Credential = ApiKeyCredential | BearerCredential


def credential_from_settings(cc: CommCareSettings) -> Credential:
    if cc.api_key:
        return ApiKeyCredential(cc.username or "", cc.api_key)
    return BearerCredential(cc.oauth_token or "")
