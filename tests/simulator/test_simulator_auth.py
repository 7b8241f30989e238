"""Credentials: API keys, OAuth (code + PKCE, refresh, password, expiry), memberships."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from simulator_helpers import DOMAIN, api_key, small_config

from data_explorer.simulator import DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER, RunningSimulator
from data_explorer.simulator.auth import pkce_pair

CASES = f"/a/{DOMAIN}/api/case/v2/"
ENDPOINTS = [CASES, f"/a/{DOMAIN}/api/v0.5/form/", f"/a/{DOMAIN}/api/v0.5/user/", f"/a/{DOMAIN}/api/v0.5/application/",
             "/api/user_domains/v1/", "/api/v0.5/identity/", "/api/identity/v1/"]


def get(sim, path, headers=None, **params) -> httpx.Response:
    return httpx.get(sim.base_url + path, headers=headers or {}, params=params, timeout=30, follow_redirects=False)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_api_endpoint_needs_a_credential(sim, path):
    assert get(sim, path, api_key()).status_code == 200
    for headers in ({}, api_key(key="wrong"), api_key(username="nobody@example.org"), {"Authorization": "Bearer nope"},
                    {"Authorization": f"Basic {DEMO_USER}:{DEMO_API_KEY}"}, {"Authorization": "ApiKey"}):
        response = get(sim, path, headers)
        assert response.status_code == 401 and response.json() == {"error": "not authorized"}


def test_api_key_scheme_is_case_insensitive(sim):
    for scheme in ("ApiKey", "apikey", "APIKEY"):
        assert get(sim, CASES, {"Authorization": f"{scheme} {DEMO_USER}:{DEMO_API_KEY}"}).status_code == 200


def test_non_members_get_403(sim):
    other = api_key(OTHER_USER, OTHER_API_KEY)
    v2 = get(sim, CASES, other)
    assert v2.status_code == 403 and "error" in v2.json()
    for path in ENDPOINTS[1:4]:
        response = get(sim, path, other)
        assert response.status_code == 403 and response.content == b""
    assert get(sim, "/a/demo-other/api/case/v2/", other).status_code == 200
    assert get(sim, "/a/no-such-space/api/v0.5/form/", other).status_code == 404


def test_identity_and_user_domains(sim):
    me = get(sim, "/api/v0.5/identity/", api_key()).json()
    assert set(me) == {"id", "username", "first_name", "last_name", "email"}
    assert me["username"] == DEMO_USER and me["last_name"] == "Usér"
    domains = get(sim, "/api/user_domains/v1/", api_key()).json()
    assert domains["meta"]["total_count"] == 2
    assert [d["domain_name"] for d in domains["objects"]] == [DOMAIN, "empty-space"]
    assert all(d["project_name"] for d in domains["objects"])


def _authorize(sim, **params) -> dict[str, list[str]]:
    response = get(sim, "/oauth/authorize/", **params)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "http://localhost:9999/callback"
    return parse_qs(location.query)


def _token(sim, **form) -> httpx.Response:
    return httpx.post(f"{sim.base_url}/oauth/token/", data=form, timeout=30)


def test_oauth_authorization_code_with_pkce_and_refresh(sim):
    verifier, challenge = pkce_pair()
    redirect = "http://localhost:9999/callback"
    query = _authorize(sim, response_type="code", client_id="explorer", redirect_uri=redirect, state="s-1",
                       code_challenge=challenge, code_challenge_method="S256", scope="access_apis", username=DEMO_USER)
    assert query["state"] == ["s-1"]
    code = query["code"][0]
    wrong = _token(sim, grant_type="authorization_code", code=code, redirect_uri=redirect, client_id="explorer",
                   code_verifier=pkce_pair()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    query = _authorize(sim, response_type="code", client_id="explorer", redirect_uri=redirect, state="s-2",
                       code_challenge=challenge, code_challenge_method="S256", username=DEMO_USER)
    code = query["code"][0]
    tokens = _token(sim, grant_type="authorization_code", code=code, redirect_uri=redirect, client_id="explorer",
                    code_verifier=verifier).json()
    assert set(tokens) == {"access_token", "refresh_token", "expires_in", "token_type", "scope"}
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900 and tokens["scope"] == "access_apis"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert get(sim, CASES, bearer).status_code == 200
    assert get(sim, "/api/v0.5/identity/", bearer).json()["username"] == DEMO_USER
    reused = _token(sim, grant_type="authorization_code", code=code, redirect_uri=redirect, code_verifier=verifier)
    assert reused.status_code == 400
    refreshed = _token(sim, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    assert refreshed["access_token"] != tokens["access_token"]
    assert get(sim, CASES, {"Authorization": f"Bearer {refreshed['access_token']}"}).status_code == 200
    assert get(sim, CASES, bearer).status_code == 401  # refreshing revoked the old access token
    again = _token(sim, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_oauth_refusals(sim):
    assert get(sim, "/oauth/authorize/", response_type="code", client_id="c").status_code == 400
    query = _authorize(sim, response_type="code", client_id="c", redirect_uri="http://localhost:9999/callback",
                       username="stranger@example.org", state="x")
    assert query["error"] == ["access_denied"] and query["state"] == ["x"]
    query = _authorize(sim, response_type="token", client_id="c", redirect_uri="http://localhost:9999/callback",
                       username=DEMO_USER)
    assert query["error"] == ["unsupported_response_type"]
    assert _token(sim, grant_type="client_credentials").json()["error"] == "unsupported_grant_type"
    assert _token(sim, grant_type="password", username=DEMO_USER, password="wrong").status_code == 400


def test_tokens_expire():
    with RunningSimulator(small_config(token_ttl=1)) as short:
        tokens = _token(short, grant_type="password", username=DEMO_USER, password=DEMO_API_KEY).json()
        assert tokens["expires_in"] == 1
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert get(short, CASES, bearer).status_code == 200
        time.sleep(1.2)
        expired = get(short, CASES, bearer)
        assert expired.status_code == 401 and expired.json() == {"error": "not authorized"}
        fresh = _token(short, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
        assert get(short, CASES, {"Authorization": f"Bearer {fresh['access_token']}"}).status_code == 200


def test_the_token_clock_can_be_moved_instead_of_waiting(fresh_sim):
    tokens = _token(fresh_sim, grant_type="password", username=DEMO_USER, password=DEMO_API_KEY).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    httpx.post(f"{fresh_sim.base_url}/_sim/clock", json={"advance": 899})
    assert get(fresh_sim, CASES, bearer).status_code == 200
    fresh_sim.advance_clock(2)
    assert get(fresh_sim, CASES, bearer).status_code == 401
    fresh_sim.advance_clock(15 * 24 * 3600)
    assert _token(fresh_sim, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 400


def test_user_domains_leaves_out_a_space_without_the_integration_privilege_that_its_member_still_reads():
    from data_explorer.simulator import DomainConfig, WebUser

    spaces = (DomainConfig(DOMAIN, cases=16), DomainConfig("no-integration", cases=16, integration_privilege=False))
    member = WebUser(DEMO_USER, DEMO_API_KEY, (DOMAIN, "no-integration"))
    with RunningSimulator(small_config(domains=spaces, users=(member,))) as sim:
        listed = get(sim, "/api/user_domains/v1/", api_key()).json()
        assert [d["domain_name"] for d in listed["objects"]] == [DOMAIN] and listed["meta"]["total_count"] == 1
        cases = get(sim, "/a/no-integration/api/case/v2/", api_key(), limit=1)
        assert cases.status_code == 200 and len(cases.json()["cases"]) == 1
