"""OAuth refresh in the loaders' CommCareClient, end to end against the simulator's token endpoint:
before expiry, once after a 401, refused refresh tokens, pass-through tokens that cannot be refreshed,
and the renewed tokens stored back encrypted for the run."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from auth_helpers import DOMAINS, DEMO_USER, count, oauth_tokens

from data_explorer.loaders.commcare.client import CommCareClient
from data_explorer.loaders.commcare.credentials import (
    BearerCredential,
    OAuthCredential,
    RefreshRefused,
    TokenExpired,
    credential_from_settings,
)
from data_explorer.loaders.errors import AuthError
from data_explorer.pipelines.status import RunStatus
from data_explorer.simulator import RunningSimulator, demo_config
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.credentials import load_run_credential, store_run_credential
from data_explorer.warehouse.runs import insert_run

CASES = f"/a/{DOMAINS[0]}/api/case/v2/"
CONTROL = "auth_refresh_ctl"


def _cc(settings_for, sim, **env):
    return settings_for(sim, COMMCARE_MAX_RETRIES=2, **env).require_commcare(credential=False)


def _oauth(tokens: dict, expires_in: float | None) -> OAuthCredential:
    expires_at = time.time() + expires_in if expires_in is not None else None
    return OAuthCredential(tokens["access_token"], tokens["refresh_token"], expires_at, "explorer", "s3cret-client")


def _fetch(client: CommCareClient) -> dict:
    return client.get_json(CASES, {"limit": 5}, what="cases")


def test_a_token_about_to_expire_is_refreshed_before_the_request(sim, settings_for):
    tokens = oauth_tokens(sim)
    renewed: list[OAuthCredential] = []
    with CommCareClient(_cc(settings_for, sim), _oauth(tokens, 30), DOMAINS[0], on_refresh=renewed.append) as client:
        assert len(_fetch(client)["cases"]) == 5
        for _ in range(3):
            _fetch(client)
    assert count(sim, "oauth_token", "200") == 2 and client.refreshes == 1  # the password grant, then one refresh
    assert count(sim, "cases", "401") == 0 and count(sim, "cases", "200") == 4
    assert len(renewed) == 1 and renewed[0] == client.credential
    new = renewed[0]
    assert new.access_token != tokens["access_token"] and new.refresh_token != tokens["refresh_token"]
    assert new.client_id == "explorer" and new.client_secret == "s3cret-client"
    assert 890 < new.expires_at - time.time() <= 900  # the simulator's 15 minutes


def test_a_401_is_refreshed_once_and_the_request_retried(sim, settings_for):
    tokens = oauth_tokens(sim)
    renewed: list[OAuthCredential] = []
    with CommCareClient(_cc(settings_for, sim), _oauth(tokens, None), DOMAINS[0], on_refresh=renewed.append) as client:
        _fetch(client)
        sim.advance_clock(901)  # the access token expires on CommCare's clock; the client does not know when
        assert len(_fetch(client)["cases"]) == 5
        _fetch(client)
    assert count(sim, "cases", "401") == 1 and count(sim, "cases", "200") == 3
    assert client.refreshes == 1 and len(renewed) == 1


def test_short_lived_tokens_are_refreshed_ahead_without_401s(settings_for):
    with RunningSimulator(demo_config(cases=16, users=2, domains=DOMAINS, token_ttl=3)) as short:
        tokens = oauth_tokens(short)
        assert tokens["expires_in"] == 3
        with CommCareClient(_cc(settings_for, short), _oauth(tokens, 3), DOMAINS[0]) as client:
            deadline = time.monotonic() + 7
            while time.monotonic() < deadline:
                _fetch(client)
                time.sleep(0.1)
        assert count(short, "cases", "401") == 0
        assert 2 <= client.refreshes <= 8  # ahead of each expiry, not on every request
        assert count(short, "cases", "200") > 3 * client.refreshes


def test_a_refused_refresh_token_fails_with_an_auth_error(sim, settings_for, caplog):
    caplog.set_level(logging.DEBUG)
    tokens = oauth_tokens(sim)
    used = oauth_tokens(sim)  # refresh tokens are single use: spend this one
    import httpx

    httpx.post(f"{sim.base_url}/oauth/token/", data={"grant_type": "refresh_token", "refresh_token": used["refresh_token"]})
    stale = OAuthCredential(tokens["access_token"], used["refresh_token"], None, "explorer")
    with CommCareClient(_cc(settings_for, sim), stale, DOMAINS[0]) as client:
        sim.advance_clock(901)
        with pytest.raises(RefreshRefused) as err:
            _fetch(client)
    message = str(err.value)
    assert isinstance(err.value, AuthError) and "refresh" in message and "Sign in" in message
    for secret in (tokens["access_token"], used["refresh_token"], tokens["refresh_token"]):
        assert secret not in message and secret not in caplog.text
    assert count(sim, "cases", "401") == 1  # no loop of refreshes and retries


def test_a_pass_through_token_cannot_be_refreshed_and_says_so(sim, settings_for):
    token = oauth_tokens(sim)["access_token"]
    credential = BearerCredential(token, username=DEMO_USER, source="given by the MCP caller")
    with CommCareClient(_cc(settings_for, sim), credential, DOMAINS[0]) as client:
        _fetch(client)
        sim.advance_clock(901)
        with pytest.raises(TokenExpired) as err:
            _fetch(client)
    message = str(err.value)
    assert "expired" in message and "cannot be refreshed" in message and DEMO_USER in message
    assert token not in message
    assert isinstance(err.value, AuthError) and err.value.code == "AUTH_TOKEN_EXPIRED"
    assert count(sim, "oauth_token") == 1 and count(sim, "cases", "401") == 1  # no refresh was attempted


def test_a_pass_through_token_refused_at_once_still_says_it_cannot_be_refreshed(sim, settings_for):
    with CommCareClient(_cc(settings_for, sim), BearerCredential("never-issued"), DOMAINS[0]) as client:
        with pytest.raises(AuthError) as err:
            _fetch(client)
    assert "cannot be refreshed" in str(err.value) and "COMMCARE_OAUTH_TOKEN" in str(err.value)


def test_settings_with_only_a_refresh_token_refresh_first(sim, settings_for):
    tokens = oauth_tokens(sim)
    cc = _cc(settings_for, sim, COMMCARE_OAUTH_REFRESH_TOKEN=tokens["refresh_token"], COMMCARE_OAUTH_CLIENT_ID="explorer")
    credential = credential_from_settings(cc)
    assert isinstance(credential, OAuthCredential) and credential.access_token == ""
    with CommCareClient(cc, credential, DOMAINS[0]) as client:
        _fetch(client)
    assert client.refreshes == 1 and count(sim, "cases", "401") == 0


def test_refreshed_tokens_are_stored_back_encrypted_for_the_run(sim, settings_for, conn, box):
    ensure_control_tables(conn, CONTROL)
    run_id = str(uuid.uuid4())
    insert_run(conn, CONTROL, RunStatus(run_id, DOMAINS[0], "commcare", "full"))
    tokens = oauth_tokens(sim)
    store_run_credential(conn, CONTROL, run_id, _oauth(tokens, None), box)

    def keep(renewed: OAuthCredential) -> None:
        store_run_credential(conn, CONTROL, run_id, renewed, box)

    stored = load_run_credential(conn, CONTROL, run_id, box)
    with CommCareClient(_cc(settings_for, sim), stored, DOMAINS[0], on_refresh=keep) as client:
        sim.advance_clock(901)
        _fetch(client)
    latest = load_run_credential(conn, CONTROL, run_id, box)
    current = client.credential
    assert (latest.access_token, latest.refresh_token) == (current.access_token, current.refresh_token)
    assert latest.access_token != tokens["access_token"] and latest.client_secret == "s3cret-client"
    assert abs(latest.expires_at - current.expires_at) < 0.001  # kept to the microsecond
    row = conn.execute(f"SELECT * FROM {CONTROL}.run_credentials WHERE run_id = %s", (run_id,)).fetchone()
    for secret in (latest.access_token, latest.refresh_token, "s3cret-client"):
        assert secret not in repr(row)
    # a resumed run starts from the newest tokens
    with CommCareClient(_cc(settings_for, sim), latest, DOMAINS[0]) as again:
        _fetch(again)
    assert again.refreshes == 0


def test_a_failing_on_refresh_does_not_fail_the_run(sim, settings_for, caplog):
    def broken(renewed: OAuthCredential) -> None:
        raise RuntimeError("database away")

    with CommCareClient(_cc(settings_for, sim), _oauth(oauth_tokens(sim), 10), DOMAINS[0], on_refresh=broken) as client:
        _fetch(client)
    assert client.refreshes == 1 and "could not keep the refreshed OAuth token" in caplog.text


def test_credential_reprs_show_no_secret(sim):
    tokens = oauth_tokens(sim)
    credential = _oauth(tokens, 60)
    text = repr(credential) + str(credential) + credential.describe()
    for secret in (tokens["access_token"], tokens["refresh_token"], "s3cret-client"):
        assert secret not in text
