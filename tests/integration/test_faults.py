"""Retries, fast auth failures and malformed responses: nothing published is ever lost."""

from __future__ import annotations

import time

import pytest

from data_explorer.simulator import DEMO_API_KEY


@pytest.mark.parametrize(
    "kind",
    ["rate_limit", "rate_limit_bare", "server_error", "drop_before_headers", "drop_mid_body"],
)
def test_transient_faults_are_retried_to_exact_counts(space_factory, conn, kind):
    space = space_factory(cases=300)
    space.sim.set_faults({"rules": [{"kind": kind, "rate": 0.3}], "seed": 3, "retry_after": 0})
    status = space.run(COMMCARE_CASE_PAGE_SIZE=50, COMMCARE_FORM_PAGE_SIZE=50, COMMCARE_MAX_RETRIES=20)
    assert status.phase == "Succeeded", status.error
    for table, count in space.expected().items():
        assert space.count(conn, table) == count
    assert space.sim.stats()["faults"].get(kind, 0) > 0, "the fault never fired: the test proves nothing"


def test_retry_after_is_honoured(space_factory):
    space = space_factory(cases=20)
    space.sim.set_faults({"rules": [{"kind": "rate_limit", "rate": 1.0, "scope": "apps"}], "retry_after": 1})
    started = time.monotonic()
    status = space.run(COMMCARE_MAX_RETRIES=2, COMMCARE_MAX_BACKOFF=5)
    elapsed = time.monotonic() - started
    assert status.phase == "Failed" and status.error["code"] == "RETRIES_EXHAUSTED"
    assert "3 attempts" in status.error["message"]
    assert elapsed >= 2.0  # two waits of the announced second each


def test_a_refused_credential_fails_fast_naming_it(space):
    space.sim.set_faults({"rules": [{"kind": "unauthorized", "rate": 1.0}]})
    started = time.monotonic()
    status = space.run(COMMCARE_MAX_RETRIES=8)
    assert time.monotonic() - started < 10
    assert status.phase == "Failed" and status.error["code"] == "AUTH_FAILED"
    message = status.error["message"]
    assert "demo@example.org" in message and space.domain in message and "COMMCARE_API_KEY" in message
    assert DEMO_API_KEY not in message
    assert space.sim.stats()["total"] == 1  # no retry of a 401


def test_a_wrong_api_key_is_refused_by_the_server(space):
    status = space.run(COMMCARE_API_KEY="wrong-key")
    assert status.phase == "Failed" and status.error["code"] == "AUTH_FAILED"
    assert "wrong-key" not in status.error["message"]


@pytest.mark.parametrize(
    "kind, scope, words",
    [
        ("html_error", "cases", "not JSON"),
        ("truncated_json", "forms", "not JSON"),
        ("missing_keys", "cases", "has no 'cases' list"),
        ("missing_keys", "apps", "no 'objects' list"),
        ("missing_keys", "users", "User API"),
    ],
)
def test_malformed_responses_fail_the_run_and_keep_what_was_published(space, conn, kind, scope, words):
    assert space.run().phase == "Succeeded"
    before = space.published(conn)
    space.sim.mutate(space.domain, update_cases=5, new_forms=3)
    space.sim.set_faults({"rules": [{"kind": kind, "rate": 1.0, "scope": scope}]})
    status = space.run(full=True)
    assert status.phase == "Failed"
    assert status.error["code"] == "MALFORMED_RESPONSE", status.error
    assert words in status.error["message"]
    assert space.published(conn) == before
    space.sim.set_faults({})
    status = space.run()
    assert status.phase == "Succeeded", status.error
    for table, count in space.expected().items():
        assert space.count(conn, table) == count


def test_retries_are_bounded(space_factory):
    space = space_factory(cases=20)
    space.sim.set_faults({"rules": [{"kind": "server_error", "rate": 1.0, "scope": "cases"}]})
    status = space.run(COMMCARE_MAX_RETRIES=3)
    assert status.phase == "Failed" and status.error["code"] == "RETRIES_EXHAUSTED"
    assert space.sim.stats()["requests"]["cases"] != {}
    assert sum(space.sim.stats()["requests"]["cases"].values()) == 4


def test_characters_postgres_cannot_store_are_replaced_not_fatal(space, conn):
    space.sim.set_faults({"rules": [{"kind": "unstorable_text", "rate": 1.0}]})
    status = space.run()
    assert status.phase == "Succeeded", status.error
    for table, count in space.expected().items():
        assert space.count(conn, table) == count
    load = status.phases["load"]
    assert load["cases"]["replaced"] > 0 and load["users"]["replaced"] > 0 and load["forms"]["replaced"] > 0
    assert any("U+FFFD" in w for w in status.phases["discover"]["warnings"])
    schema = space.names.schema
    names = conn.execute(f'SELECT count(*) FROM "{schema}".cases WHERE case_name LIKE %s', ("\ufffd\ufffd%",)).fetchone()[0]
    assert names == space.expected()["cases"]
