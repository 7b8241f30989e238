"""Retries, fast auth failures and malformed responses: nothing published is ever lost."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from psycopg import sql

from data_explorer.pipelines.reporters import ControlTableReporter
from data_explorer.pipelines.runner import RunRequest, _adopt_committed_success, materialize
from data_explorer.pipelines.status import RunStatus
from data_explorer.simulator import DEMO_API_KEY
from data_explorer.warehouse.runs import insert_run


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


class _RefusesOnceSucceeded:
    """A reporter whose last report fails, as a status patch or a row update can after the commit."""

    def report(self, status, *, important=False):
        if status.phase == "Succeeded":
            raise psycopg.OperationalError("the connection was lost while reporting")

    def close(self):
        pass


def test_a_report_failing_after_the_publish_leaves_the_run_succeeded(space, conn, caplog):
    status = materialize(space.settings(), space.db, RunRequest(space.domain), extra_reporters=(_RefusesOnceSucceeded(),))
    assert status.phase == "Succeeded" and status.error is None, status.error
    assert status.progress["current"] == 100
    for table, count in space.expected().items():
        assert space.count(conn, table) == count
    row = conn.execute("SELECT phase, error FROM data_explorer.runs WHERE run_id = %s", (status.run_id,)).fetchone()
    assert row == ("Succeeded", None)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "data_explorer.pipelines.runner"]
    assert said == [f"run {status.run_id} published, then: OperationalError: the connection was lost while reporting"], said


def test_a_publish_that_cannot_commit_fails_the_run_and_changes_nothing(space, conn):
    assert space.run().phase == "Succeeded"
    before = space.published(conn)
    space.sim.mutate(space.domain, update_cases=20, new_cases=5)
    # a deferred check runs at COMMIT, after the run's row said Succeeded inside the transaction
    conn.execute(
        "CREATE FUNCTION pg_temp.refuse_success() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'refused at commit'; END$$"
    )
    trigger = sql.Identifier(f"refuse_{space.domain}"[:60])
    conn.execute(
        sql.SQL(
            "CREATE CONSTRAINT TRIGGER {} AFTER UPDATE ON data_explorer.runs DEFERRABLE INITIALLY DEFERRED"
            " FOR EACH ROW WHEN (NEW.phase = 'Succeeded' AND NEW.domain = {}) EXECUTE FUNCTION pg_temp.refuse_success()"
        ).format(trigger, sql.Literal(space.domain))
    )
    try:
        status = space.run(full=True)
    finally:
        conn.execute(sql.SQL("DROP TRIGGER {} ON data_explorer.runs").format(trigger))
    assert status.phase == "Failed", status
    assert status.error["code"] == "DATABASE_ERROR" and "refused at commit" in status.error["message"], status.error
    assert status.progress["current"] < 100 and status.completed_at is not None
    assert "publish" not in status.phases
    row = conn.execute("SELECT phase, error->>'code' FROM data_explorer.runs WHERE run_id = %s", (status.run_id,)).fetchone()
    assert row == ("Failed", "DATABASE_ERROR")
    assert space.published(conn) == before, "a publish that did not commit changed what agents see"
    assert space.run().phase == "Succeeded"
    for table, count in space.expected().items():
        assert space.count(conn, table) == count


def test_a_run_whose_commit_went_through_unseen_is_succeeded(space, conn):
    """A connection lost at COMMIT can hide a commit that happened: the run's row decides."""
    published = space.run()
    assert published.phase == "Succeeded"
    seen = RunStatus(published.run_id, space.domain, published.pipeline, published.mode)
    seen.fail("DATABASE_ERROR", "PostgreSQL: server closed the connection unexpectedly")
    _adopt_committed_success(conn, "data_explorer", seen)
    assert (seen.phase, seen.error, seen.progress) == ("Succeeded", None, published.progress)
    assert seen.phases["load"] == published.phases["load"]
    other = RunStatus("00000000-0000-4000-8000-000000000000", space.domain, published.pipeline, published.mode)
    other.fail("DATABASE_ERROR", "PostgreSQL: server closed the connection unexpectedly")
    _adopt_committed_success(conn, "data_explorer", other)
    assert other.phase == "Failed" and other.error["code"] == "DATABASE_ERROR"


def test_a_run_still_records_its_end_after_its_reporting_session_was_terminated(space, conn):
    """The sessions of a run can all be terminated (a failover, an administrator): the run row must
    still say how the run ended, not stay in the phase it was in."""
    assert space.run().phase == "Succeeded"
    status = RunStatus(str(uuid.uuid4()), space.domain, "commcare_sync", "full")
    insert_run(conn, "data_explorer", status)
    reporter = ControlTableReporter(space.db, "data_explorer")
    try:
        pid = reporter._conn.info.backend_pid
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() != (0,):
            assert time.monotonic() < deadline, "the terminated session did not end"
            time.sleep(0.05)
        status.fail("TRANSFORM_FAILED", "dbt lost its sessions")
        reporter.report(status, important=True)
    finally:
        reporter.close()
    row = conn.execute("SELECT phase, error->>'code' FROM data_explorer.runs WHERE run_id = %s", (status.run_id,)).fetchone()
    assert row == ("Failed", "TRANSFORM_FAILED")
