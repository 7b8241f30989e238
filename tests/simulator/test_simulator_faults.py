"""Fault injection, each kind as a client meets it; deterministic draws; scopes; statistics."""

from __future__ import annotations

import time

import httpx
import pytest
from simulator_helpers import DOMAIN, api_key

from data_explorer.simulator import FaultConfig, FaultRule

CASES = f"/a/{DOMAIN}/api/case/v2/"
FORMS = f"/a/{DOMAIN}/api/v0.5/form/"


def _always(sim, kind: str, scope: str = "all", **options) -> httpx.Client:
    sim.set_faults(FaultConfig((FaultRule(kind, 1.0, scope),), **options))
    return httpx.Client(base_url=sim.base_url, headers=api_key(), timeout=30)


def test_rate_limits(fresh_sim):
    with _always(fresh_sim, "rate_limit", retry_after=3) as client:
        response = client.get(CASES)
        assert response.status_code == 429 and response.headers["retry-after"] == "3"
        assert response.content == b"", "CommCare's 429 has no body"
        assert client.get(FORMS).headers["retry-after"] == "3"
    with _always(fresh_sim, "rate_limit_bare") as client:
        response = client.get(FORMS)
        assert response.status_code == 429 and "retry-after" not in response.headers and response.content == b""


def test_server_errors_vary_between_500_502_503(fresh_sim):
    with _always(fresh_sim, "server_error") as client:
        statuses = {client.get(CASES).status_code for _ in range(30)}
    assert statuses == {500, 502, 503}


def test_dropped_connections(fresh_sim):
    with _always(fresh_sim, "drop_before_headers") as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(CASES)
    with _always(fresh_sim, "drop_mid_body") as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get(CASES, params={"limit": 500})
    fresh_sim.set_faults(FaultConfig())
    with httpx.Client(base_url=fresh_sim.base_url, headers=api_key()) as client:
        assert client.get(CASES).status_code == 200  # the server lives on
    assert fresh_sim.stats()["requests"]["cases"]["dropped"] == 2


def test_malformed_bodies(fresh_sim):
    with _always(fresh_sim, "html_error") as client:
        response = client.get(CASES)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert response.text.lstrip().startswith("<!DOCTYPE html>")
    with _always(fresh_sim, "truncated_json") as client:
        response = client.get(CASES, params={"limit": 50})
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
    with _always(fresh_sim, "missing_keys") as client:
        assert "cases" not in client.get(CASES).json()
        assert "objects" not in client.get(FORMS).json()


def test_always_401(fresh_sim):
    with _always(fresh_sim, "unauthorized") as client:
        response = client.get(CASES)
        assert response.status_code == 401 and response.json() == {"error": "not authorized"}


def test_slow_responses(fresh_sim):
    with _always(fresh_sim, "slow", slow_delay=0.4) as client:
        started = time.monotonic()
        assert client.get(CASES).status_code == 200
        assert time.monotonic() - started >= 0.4
        with pytest.raises(httpx.ReadTimeout):
            client.get(CASES, timeout=0.1)


def test_scope_limits_faults_to_one_kind_of_endpoint(fresh_sim):
    with _always(fresh_sim, "server_error", scope="forms") as client:
        assert client.get(CASES).status_code == 200
        assert client.get(f"/a/{DOMAIN}/api/v0.5/user/").status_code == 200
        assert client.get(FORMS).status_code >= 500


def test_rates_are_deterministic_given_the_seed(fresh_sim):
    def run() -> list[int]:
        fresh_sim.set_faults({"rates": {"server_error": 0.3, "rate_limit": 0.2}, "seed": 42, "retry_after": 0})
        with httpx.Client(base_url=fresh_sim.base_url, headers=api_key()) as client:
            return [client.get(CASES).status_code for _ in range(60)]

    first, second = run(), run()
    assert first == second
    assert 10 < sum(s >= 500 for s in first) < 35 and 3 < first.count(429) < 25 and first.count(200) > 10


def test_faults_are_set_over_http_and_counted(fresh_sim):
    with httpx.Client(base_url=fresh_sim.base_url, headers=api_key()) as client:
        put = client.put("/_sim/faults", json={"rules": [{"kind": "rate_limit_bare", "rate": 1, "scope": "cases"}]})
        assert put.status_code == 200 and put.json()["rules"][0]["kind"] == "rate_limit_bare"
        assert client.get(CASES).status_code == 429
        assert client.put("/_sim/faults", json={"rates": {"explode": 1}}).status_code == 400
        assert client.put("/_sim/faults", json={"rates": {"slow": 2}}).status_code == 400
        stats = client.get("/_sim/stats").json()
        assert stats["requests"]["cases"] == {"429": 1} and stats["faults"] == {"rate_limit_bare": 1}
        client.post("/_sim/reset")
        assert client.get(CASES).status_code == 200
        assert client.get("/_sim/stats").json()["requests"] == {"cases": {"200": 1}}
