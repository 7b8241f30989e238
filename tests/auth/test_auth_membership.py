"""CommCareAuthenticator.member_of against the simulator over real HTTP: a project space user_domains leaves
out is its member's when CommCare lets their credential read it; one request per credential and project
space within the cache time; never a request for a name that cannot be a project space."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from auth_helpers import DOMAINS, DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER, api_key, count, oauth_tokens

from data_explorer.loaders.commcare.credentials import ApiKeyCredential, BearerCredential
from data_explorer.mcp_gateway.auth import AuthUnavailable, CommCareAuthenticator
from data_explorer.simulator import DomainConfig, RunningSimulator, WebUser, demo_config

pytestmark = pytest.mark.anyio
HIDDEN = "auth-hidden"  # demo@ belongs to it; its plan lacks the integration privilege
DEMO = ApiKeyCredential(DEMO_USER, DEMO_API_KEY)
OTHER = ApiKeyCredential(OTHER_USER, OTHER_API_KEY)


@pytest.fixture
def hidden_sim():
    config = demo_config(cases=16, users=2, domains=DOMAINS)
    config = dataclasses.replace(
        config,
        domains=config.domains + (DomainConfig(HIDDEN, cases=16, users=2, integration_privilege=False),),
        users=(WebUser(DEMO_USER, DEMO_API_KEY, (DOMAINS[0], HIDDEN)), WebUser(OTHER_USER, OTHER_API_KEY, DOMAINS[1:])),
    )
    with RunningSimulator(config) as running:
        yield running


async def test_a_member_of_an_unlisted_space_is_one_once_per_cache_time(hidden_sim, settings_for, clock):
    auth = CommCareAuthenticator(settings_for(hidden_sim), clock=clock)
    identity = await auth.authenticate(api_key(DEMO_USER))
    assert identity.domains == (DOMAINS[0],)  # user_domains left it out
    assert await auth.member_of(identity.credential, HIDDEN) is True
    assert await auth.member_of(DEMO, HIDDEN) is True  # the same credential: remembered
    assert count(hidden_sim, "cases") == 1 and auth.membership_checks == 1
    clock.advance(auth.cache_seconds - 1)
    assert await auth.member_of(DEMO, HIDDEN) is True and count(hidden_sim, "cases") == 1
    clock.advance(2)
    assert await auth.member_of(DEMO, HIDDEN) is True and count(hidden_sim, "cases", "200") == 2


async def test_a_non_member_is_refused_once_per_cache_time_and_no_answer_crosses_credentials(hidden_sim, settings_for, clock):
    auth = CommCareAuthenticator(settings_for(hidden_sim), clock=clock)
    assert await auth.member_of(DEMO, HIDDEN) is True
    for _ in range(3):
        assert await auth.member_of(OTHER, HIDDEN) is False  # demo@'s answer is not other@'s
    assert count(hidden_sim, "cases", "403") == 1 and count(hidden_sim, "cases") == 2
    assert await auth.member_of(DEMO, "no-such-space") is False and count(hidden_sim, "cases", "404") == 1
    wrong = ApiKeyCredential(DEMO_USER, "wrong-key")
    assert await auth.member_of(wrong, HIDDEN) is False and count(hidden_sim, "cases", "401") == 1
    token = oauth_tokens(hidden_sim, DEMO_USER)["access_token"]
    assert await auth.member_of(BearerCredential(token), HIDDEN) is True and count(hidden_sim, "cases", "200") == 2


@pytest.mark.parametrize("name", ["../auth-a", "auth-a/../x", "a b", "", "-x", "x" * 81, "%2e%2e"])
async def test_a_name_that_cannot_be_a_project_space_is_never_asked_about(hidden_sim, settings_for, name):
    auth = CommCareAuthenticator(settings_for(hidden_sim))
    assert await auth.member_of(DEMO, name) is False
    assert auth.membership_checks == 0 and hidden_sim.stats()["total"] == 0


async def test_concurrent_checks_share_one_request(hidden_sim, settings_for):
    auth = CommCareAuthenticator(settings_for(hidden_sim))
    answers = await asyncio.gather(*(auth.member_of(DEMO, HIDDEN) for _ in range(8)))
    assert answers == [True] * 8 and count(hidden_sim, "cases") == 1


async def test_commcare_away_is_unavailable_remembered_briefly(settings_for, closed_url, clock):
    auth = CommCareAuthenticator(settings_for(closed_url), clock=clock)
    for _ in range(2):
        with pytest.raises(AuthUnavailable, match="could not be reached"):
            await auth.member_of(DEMO, HIDDEN)
    assert auth.membership_checks == 1
    clock.advance(auth.negative_seconds + 0.1)
    with pytest.raises(AuthUnavailable):
        await auth.member_of(DEMO, HIDDEN)
    assert auth.membership_checks == 2


async def test_a_rate_limited_check_is_unavailable_not_a_refusal(hidden_sim, settings_for):
    hidden_sim.set_faults({"rules": [{"kind": "rate_limit_bare", "rate": 1.0, "scope": "cases"}]})
    auth = CommCareAuthenticator(settings_for(hidden_sim))
    with pytest.raises(AuthUnavailable, match="HTTP 429"):
        await auth.member_of(DEMO, HIDDEN)
