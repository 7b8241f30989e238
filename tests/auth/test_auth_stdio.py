"""identity_from_settings: over stdio the caller is whoever the gateway was started as."""

from __future__ import annotations

import pytest
from auth_helpers import DOMAINS, DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER, oauth_tokens

from data_explorer.config import SettingsError
from data_explorer.loaders.commcare.credentials import ApiKeyCredential, BearerCredential, OAuthCredential
from data_explorer.mcp_gateway.auth import AuthUnavailable, CredentialRefused, identity_from_settings

pytestmark = pytest.mark.anyio


async def test_an_api_key_from_the_settings(sim, settings_for):
    identity = await identity_from_settings(settings_for(sim, COMMCARE_USERNAME=OTHER_USER, COMMCARE_API_KEY=OTHER_API_KEY))
    assert identity.username == OTHER_USER and identity.domains == tuple(sorted(DOMAINS[1:]))
    assert identity.credential == ApiKeyCredential(OTHER_USER, OTHER_API_KEY)


async def test_an_oauth_token_from_the_settings(sim, settings_for):
    token = oauth_tokens(sim)["access_token"]
    identity = await identity_from_settings(settings_for(sim, COMMCARE_OAUTH_TOKEN=token))
    assert identity.username == DEMO_USER and identity.domains == (DOMAINS[0],)
    assert isinstance(identity.credential, BearerCredential) and identity.credential.token == token


async def test_a_refresh_token_alone_is_exchanged_first(sim, settings_for):
    tokens = oauth_tokens(sim)
    identity = await identity_from_settings(settings_for(
        sim, COMMCARE_OAUTH_REFRESH_TOKEN=tokens["refresh_token"], COMMCARE_OAUTH_CLIENT_ID="explorer"))
    assert identity.username == DEMO_USER
    assert isinstance(identity.credential, OAuthCredential) and identity.credential.access_token
    assert identity.credential.refresh_token != tokens["refresh_token"]  # CommCare rotated it


async def test_an_expired_access_token_with_a_refresh_token_is_refreshed(sim, settings_for):
    tokens = oauth_tokens(sim)
    sim.advance_clock(901)
    identity = await identity_from_settings(settings_for(
        sim, COMMCARE_OAUTH_TOKEN=tokens["access_token"], COMMCARE_OAUTH_REFRESH_TOKEN=tokens["refresh_token"],
        COMMCARE_OAUTH_CLIENT_ID="explorer"))
    assert identity.username == DEMO_USER and identity.credential.access_token != tokens["access_token"]


@pytest.mark.parametrize("env, named", [
    ({"COMMCARE_USERNAME": DEMO_USER, "COMMCARE_API_KEY": "wrong-key"}, "COMMCARE_API_KEY"),
    ({"COMMCARE_USERNAME": OTHER_USER, "COMMCARE_API_KEY": DEMO_API_KEY}, "COMMCARE_USERNAME"),
    ({"COMMCARE_OAUTH_TOKEN": "expired-or-never-issued"}, "COMMCARE_OAUTH_TOKEN"),
    ({"COMMCARE_OAUTH_REFRESH_TOKEN": "spent", "COMMCARE_OAUTH_CLIENT_ID": "explorer"}, "COMMCARE_OAUTH_REFRESH_TOKEN"),
])
async def test_a_refused_credential_names_its_setting(sim, settings_for, env, named):
    with pytest.raises(CredentialRefused) as err:
        await identity_from_settings(settings_for(sim, **env))
    message = str(err.value)
    assert named in message and "refused" in message
    assert isinstance(err.value, SettingsError)  # the CLI reports it as a configuration problem
    for value in env.values():
        if value not in (DEMO_USER, OTHER_USER, "explorer"):
            assert value not in message


async def test_an_expired_token_says_it_may_have_expired(sim, settings_for):
    token = oauth_tokens(sim)["access_token"]
    sim.advance_clock(901)
    with pytest.raises(CredentialRefused, match="expired"):
        await identity_from_settings(settings_for(sim, COMMCARE_OAUTH_TOKEN=token))


async def test_commcare_unreachable_names_the_base_url(settings_for, closed_url):
    with pytest.raises(AuthUnavailable, match="COMMCARE_BASE_URL"):
        await identity_from_settings(settings_for(closed_url, COMMCARE_USERNAME=DEMO_USER, COMMCARE_API_KEY=DEMO_API_KEY))


async def test_missing_settings_are_named(settings_for, closed_url):
    with pytest.raises(SettingsError, match="COMMCARE_API_KEY"):
        await identity_from_settings(settings_for(closed_url))
    with pytest.raises(SettingsError, match="COMMCARE_OAUTH_CLIENT_ID"):
        await identity_from_settings(settings_for(closed_url, COMMCARE_OAUTH_REFRESH_TOKEN="r"))
