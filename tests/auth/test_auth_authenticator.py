"""CommCareAuthenticator against the simulator over real HTTP: who a token is, where they belong,
what is cached and for how long, and what happens when CommCare is away."""

from __future__ import annotations

import asyncio
import logging

import pytest
from auth_helpers import DOMAINS, DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER, api_key, count, oauth_tokens

from data_explorer.loaders.commcare.credentials import ApiKeyCredential, BearerCredential
from data_explorer.mcp_gateway.auth import (
    AuthUnavailable,
    CommCareAuthenticator,
    credential_from_token,
    token_key,
)
from data_explorer.simulator import RunningSimulator, demo_config

pytestmark = pytest.mark.anyio


async def test_api_keys_give_each_user_their_own_domains(sim, settings_for):
    auth = CommCareAuthenticator(settings_for(sim))
    demo = await auth.authenticate(api_key(DEMO_USER))
    other = await auth.authenticate(api_key(OTHER_USER))
    assert demo.username == DEMO_USER and demo.domains == (DOMAINS[0],)
    assert other.username == OTHER_USER and other.domains == tuple(sorted(DOMAINS[1:]))
    assert demo.credential == ApiKeyCredential(DEMO_USER, DEMO_API_KEY)
    assert demo.member_of(DOMAINS[0]) and not demo.member_of(DOMAINS[1])
    assert demo.expires_at is None  # an API key does not expire


@pytest.mark.parametrize("scheme", ["ApiKey", "apikey", "APIKEY", "aPiKeY"])
async def test_the_api_key_scheme_is_case_insensitive(sim, settings_for, scheme):
    identity = await CommCareAuthenticator(settings_for(sim)).authenticate(f"{scheme} {DEMO_USER}:{DEMO_API_KEY}")
    assert identity is not None and identity.username == DEMO_USER


async def test_an_oauth_access_token_is_accepted_with_its_users_domains(sim, settings_for):
    tokens = oauth_tokens(sim, OTHER_USER)
    identity = await CommCareAuthenticator(settings_for(sim)).authenticate(tokens["access_token"])
    assert identity.username == OTHER_USER and identity.domains == tuple(sorted(DOMAINS[1:]))
    assert isinstance(identity.credential, BearerCredential)
    assert identity.credential.token == tokens["access_token"] and identity.credential.username == OTHER_USER


@pytest.mark.parametrize(
    "token",
    [
        f"ApiKey {DEMO_USER}:wrong-key",
        "ApiKey nobody@example.org:demo-api-key",
        f"ApiKey {OTHER_USER}:{DEMO_API_KEY}",  # another user's name with this key
        "not-a-token-commcare-issued",
    ],
)
async def test_refused_credentials_are_none(sim, settings_for, token):
    assert await CommCareAuthenticator(settings_for(sim)).authenticate(token) is None
    assert count(sim, "identity", "401") == 1


@pytest.mark.parametrize("token", ["", "   ", "ApiKey no-colon", "ApiKey :key", "ApiKey user:", "two words", "x\ny",
                                   "Bearer", "é-not-ascii", "a" * 5000])
async def test_malformed_tokens_are_refused_without_asking_commcare(sim, settings_for, token):
    assert await CommCareAuthenticator(settings_for(sim)).authenticate(token) is None
    assert sim.stats()["total"] == 0


async def test_an_expired_token_is_refused(sim, settings_for):
    token = oauth_tokens(sim)["access_token"]
    assert await CommCareAuthenticator(settings_for(sim)).authenticate(token) is not None
    sim.advance_clock(901)  # access tokens live 900 s
    assert await CommCareAuthenticator(settings_for(sim)).authenticate(token) is None


async def test_a_refreshed_away_token_is_refused_once_the_cache_expires(sim, settings_for, clock):
    import httpx

    tokens = oauth_tokens(sim)
    auth = CommCareAuthenticator(settings_for(sim), clock=clock)
    assert await auth.authenticate(tokens["access_token"]) is not None
    httpx.post(f"{sim.base_url}/oauth/token/", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert await auth.authenticate(tokens["access_token"]) is not None  # still cached: "verified briefly"
    clock.advance(60.1)
    assert await auth.authenticate(tokens["access_token"]) is None


async def test_user_domains_is_followed_across_pages():
    domains = tuple(f"page-{i:03d}" for i in range(131))  # other@ belongs to 130 of them: two pages of 100
    with RunningSimulator(demo_config(cases=0, users=1, domains=domains)) as big:
        from data_explorer.config import load_settings

        settings = load_settings({"COMMCARE_BASE_URL": big.base_url, "DATA_EXPLORER_HOME": "/nonexistent"})
        identity = await CommCareAuthenticator(settings).authenticate(api_key(OTHER_USER))
        assert identity.domains == domains[1:]
        assert count(big, "user_domains", "200") == 2


async def test_identities_are_cached_for_the_configured_time(sim, settings_for, clock):
    auth = CommCareAuthenticator(settings_for(sim, DATA_EXPLORER_AUTH_CACHE_SECONDS=30), clock=clock)
    assert auth.cache_seconds == 30
    for _ in range(5):
        assert (await auth.authenticate(api_key())).username == DEMO_USER
    assert count(sim, "identity") == 1 and count(sim, "user_domains") == 1
    clock.advance(29.9)
    await auth.authenticate(api_key())
    assert count(sim, "identity") == 1
    clock.advance(0.2)
    await auth.authenticate(api_key())
    assert count(sim, "identity") == 2 and count(sim, "user_domains") == 2


async def test_the_default_cache_time_is_a_minute(sim, settings_for):
    assert CommCareAuthenticator(settings_for(sim)).cache_seconds == 60


async def test_a_cache_time_of_zero_asks_commcare_every_time(sim, settings_for):
    auth = CommCareAuthenticator(settings_for(sim, DATA_EXPLORER_AUTH_CACHE_SECONDS=0))
    for _ in range(3):
        assert await auth.authenticate(api_key()) is not None
        assert await auth.authenticate("ApiKey x@example.org:bad") is None
    assert count(sim, "identity", "200") == 3 and count(sim, "identity", "401") == 3


async def test_refusals_are_cached_briefly(sim, settings_for, clock):
    auth = CommCareAuthenticator(settings_for(sim), clock=clock)
    bad = f"ApiKey {DEMO_USER}:guess"
    for _ in range(20):
        assert await auth.authenticate(bad) is None
    assert count(sim, "identity", "401") == 1  # a bad token cannot hammer CommCare
    clock.advance(5.1)
    assert await auth.authenticate(bad) is None
    assert count(sim, "identity", "401") == 2


async def test_the_cache_is_bounded(sim, settings_for, clock):
    auth = CommCareAuthenticator(settings_for(sim), clock=clock, max_entries=2)
    tokens = [api_key(DEMO_USER), api_key(OTHER_USER), oauth_tokens(sim)["access_token"]]
    for token in tokens:
        await auth.authenticate(token)
    assert len(auth._cache) == 2 and count(sim, "identity") == 3
    await auth.authenticate(tokens[0])  # the oldest was evicted
    assert count(sim, "identity") == 4
    await auth.authenticate(tokens[2])  # the newest was kept
    assert count(sim, "identity") == 4


async def test_concurrent_checks_of_one_token_share_one_round_trip(sim, settings_for):
    auth = CommCareAuthenticator(settings_for(sim))
    results = await asyncio.gather(*(auth.authenticate(api_key()) for _ in range(25)))
    assert {r.username for r in results} == {DEMO_USER}
    assert count(sim, "identity") == 1 and auth.verifications == 1


async def test_commcare_unreachable_is_auth_unavailable_not_a_refusal(settings_for, closed_url, clock):
    auth = CommCareAuthenticator(settings_for(closed_url), clock=clock)
    with pytest.raises(AuthUnavailable, match="could not be reached"):
        await auth.authenticate(api_key())
    assert auth.verifications == 1
    with pytest.raises(AuthUnavailable):  # remembered briefly: no second attempt right away
        await auth.authenticate(api_key())
    assert auth.verifications == 1
    clock.advance(5.1)
    with pytest.raises(AuthUnavailable):
        await auth.authenticate(api_key())
    assert auth.verifications == 2


@pytest.mark.parametrize("kind", ["server_error", "rate_limit", "rate_limit_bare", "html_error", "missing_keys",
                                  "drop_before_headers"])
async def test_commcare_faults_are_auth_unavailable(sim, settings_for, kind):
    sim.set_faults({"rules": [{"kind": kind, "rate": 1.0, "scope": "identity"}]})
    with pytest.raises(AuthUnavailable) as err:
        await CommCareAuthenticator(settings_for(sim)).authenticate(api_key())
    assert DEMO_API_KEY not in str(err.value)


async def test_a_wrong_base_url_is_unavailable_and_says_so(sim, settings_for):
    auth = CommCareAuthenticator(settings_for(sim.base_url + "/not-commcare"))
    with pytest.raises(AuthUnavailable, match="COMMCARE_BASE_URL"):
        await auth.authenticate(api_key())


async def test_commcare_recovering_is_noticed_after_the_short_wait(sim, settings_for, clock):
    auth = CommCareAuthenticator(settings_for(sim), clock=clock)
    sim.set_faults({"rules": [{"kind": "server_error", "rate": 1.0, "scope": "identity"}]})
    with pytest.raises(AuthUnavailable):
        await auth.authenticate(api_key())
    sim.set_faults({"rules": []})
    clock.advance(5.1)
    assert (await auth.authenticate(api_key())).username == DEMO_USER


async def test_no_token_in_logs_reprs_or_cache_keys(sim, settings_for, caplog):
    caplog.set_level(logging.DEBUG)
    oauth = oauth_tokens(sim)["access_token"]
    auth = CommCareAuthenticator(settings_for(sim))
    identities = [await auth.authenticate(t) for t in (api_key(), oauth)]
    assert await auth.authenticate(f"ApiKey {DEMO_USER}:wrong-{DEMO_API_KEY}") is None
    assert await auth.authenticate(oauth + "x") is None
    sim.set_faults({"rules": [{"kind": "server_error", "rate": 1.0, "scope": "identity"}]})
    with pytest.raises(AuthUnavailable) as err:
        await auth.authenticate(api_key(OTHER_USER))
    texts = [caplog.text, str(err.value), repr(auth._cache), " ".join(auth._cache)]
    for identity in identities:
        texts += [repr(identity), str(identity), repr(identity.credential), identity.credential.describe()]
    for text in texts:
        for secret in (DEMO_API_KEY, oauth, OTHER_API_KEY):
            assert secret not in text
    assert "credential" not in repr(identities[0])
    assert set(auth._cache) >= {token_key(api_key()), token_key(oauth)}
    assert "verified CommCare user demo@example.org" in caplog.text  # the log does say who


def test_credentials_from_tokens():
    assert credential_from_token("ApiKey a@b.org:k1") == ApiKeyCredential("a@b.org", "k1")
    assert credential_from_token("  apikey a:b:k2 ") == ApiKeyCredential("a:b", "k2")
    assert credential_from_token("tok123") == BearerCredential("tok123")
    assert credential_from_token("Bearer tok123") == BearerCredential("tok123")
    assert credential_from_token("ApiKey a@b.org:k1").describe() == "the API key of a@b.org (given by the MCP caller)"
    assert token_key("x") != "x" and len(token_key("x")) == 64
