"""The runner killed with SIGKILL during load and during transform: the published data stays
exactly as it was, and the next run completes with exact counts."""

from __future__ import annotations

import signal
import time

import pytest
from run_helpers import kill as _kill
from run_helpers import lock_table as _lock
from run_helpers import spawn as _spawn
from run_helpers import wait_for as _wait_for
from run_helpers import waiting_on_a_lock as _waiting_on_a_lock

pytestmark = pytest.mark.slow


def _loading_cases(phase, phases):
    return phase == "Loading" and phases.get("load", {}).get("cases", {}).get("rows", 0) > 0


def _transforming(phase, phases):
    return phase == "Transforming" and len(phases.get("transform", {}).get("models", {})) >= 2


@pytest.mark.parametrize("point", [_loading_cases, _transforming], ids=["during-load", "during-transform"])
def test_kill_leaves_the_published_run_and_the_next_run_completes(space_factory, conn, point):
    space = space_factory(cases=600)
    assert space.run().phase == "Succeeded"
    before = space.published(conn)
    space.sim.mutate(space.domain, update_cases=50, new_cases=20, new_forms=20)
    if point is _loading_cases:  # slow pages so that the kill lands mid-load
        space.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 0.3})
    # killed during transform: a full run, so that dbt is building the tables
    proc = _spawn(space, full=point is _transforming, COMMCARE_CASE_PAGE_SIZE=10)
    killed_run = _wait_for(conn, space.domain, point, proc)
    _kill(proc)
    _assert_next_run_completes(space, conn, before, killed_run)


def test_kill_while_applying_changes_leaves_the_published_run(space_factory, conn, db):
    space = space_factory(cases=600)
    assert space.run().phase == "Succeeded"
    before = space.published(conn)
    space.sim.mutate(space.domain, update_cases=50, new_cases=20, new_forms=20)
    locker = _lock(db, space.names.schema, "form_submissions")  # the last table the changes reach
    proc = _spawn(space)
    _waiting_on_a_lock(conn, proc, locker)  # the other tables' changes are made, not committed
    killed_run = _wait_for(conn, space.domain, lambda phase, phases: phase == "Transforming", proc)
    _kill(proc)
    locker.rollback()
    locker.close()
    status = _assert_next_run_completes(space, conn, before, killed_run)
    assert status.phases["transform"]["mode"] == "incremental"  # the next run applied the same changes in place


def test_sigterm_while_applying_changes_rolls_them_back(space_factory, conn, db):
    space = space_factory(cases=300)
    assert space.run().phase == "Succeeded"
    before = space.published(conn)
    space.sim.mutate(space.domain, update_cases=20, new_forms=5)
    locker = _lock(db, space.names.schema, "form_submissions")
    proc = _spawn(space)
    _waiting_on_a_lock(conn, proc, locker)  # in the middle of the transaction that applies the changes
    run_id = _wait_for(conn, space.domain, lambda phase, phases: phase == "Transforming", proc)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert time.monotonic() - signalled < 10, "the cancel waited for the lock instead of stopping"
    locker.rollback()
    locker.close()
    assert proc.returncode == 1 and "cancelled" in output, output
    phase, error = conn.execute("SELECT phase, error FROM data_explorer.runs WHERE run_id = %s", (run_id,)).fetchone()
    assert phase == "Cancelled" and error["code"] == "CANCELLED"
    assert space.published(conn) == before
    status = space.run()
    assert status.phase == "Succeeded" and status.phases["transform"]["mode"] == "incremental"
    assert space.published(conn) != before


def _assert_next_run_completes(space, conn, before, killed_run):
    assert space.published(conn) == before, "a killed run changed what agents see"
    space.sim.set_faults({})
    status = space.run()
    assert status.phase == "Succeeded", status.error
    for table, count in space.expected().items():
        assert space.count(conn, table) == count
    assert space.published(conn) != before
    phase, error = conn.execute("SELECT phase, error FROM data_explorer.runs WHERE run_id = %s", (killed_run,)).fetchone()
    assert phase == "Failed" and error["code"] == "RUNNER_LOST"
    leftovers = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (space.names.build_schema,)).fetchone()[0]
    assert leftovers == 0
    return status


def _retrying_forms(phase, phases):
    return phase == "Loading" and phases.get("load", {}).get("forms", {}).get("state") == "running"


@pytest.mark.parametrize(
    "point, faults",
    [
        (_loading_cases, {"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 0.3}),
        (_retrying_forms, {"rules": [{"kind": "server_error", "rate": 1.0, "scope": "forms"}]}),
        (_transforming, {}),
    ],
    ids=["during-load", "while-backing-off", "during-transform"],
)
def test_sigterm_cancels_promptly_and_keeps_the_published_run(space_factory, conn, db, point, faults):
    space = space_factory(cases=300)
    assert space.run().phase == "Succeeded"
    before = space.published(conn)
    space.sim.mutate(space.domain, update_cases=30)
    space.sim.set_faults(faults)
    proc = _spawn(space, full=point is _transforming, COMMCARE_CASE_PAGE_SIZE=5, COMMCARE_MAX_BACKOFF=60, COMMCARE_MAX_RETRIES=8)
    locker = None
    if point is _transforming:  # dbt held on a raw table it reads (loading does not write it), so the signal lands mid-build
        _wait_for(conn, space.domain, lambda phase, phases: phase == "Loading", proc)
        locker = _lock(db, space.names.raw_schema, "form_definitions")
        _waiting_on_a_lock(conn, proc, locker)
        point = lambda phase, phases: phase == "Transforming"  # noqa: E731 (models done so far may not be reported yet)
    run_id = _wait_for(conn, space.domain, point, proc)
    if point is _retrying_forms:
        time.sleep(1.5)  # into the backoff waits
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    if locker:
        locker.close()
    assert time.monotonic() - signalled < 10, "the cancel waited for the work instead of stopping it"
    assert proc.returncode == 1, output
    assert "cancelled" in output
    phase, error = conn.execute("SELECT phase, error FROM data_explorer.runs WHERE run_id = %s", (run_id,)).fetchone()
    assert phase == "Cancelled" and error["code"] == "CANCELLED"
    assert space.published(conn) == before


def test_a_second_run_for_the_same_tenant_is_refused_while_one_runs(space_factory, conn):
    from data_explorer.pipelines.runner import RunConflict

    space = space_factory(cases=200)
    space.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 0.3})
    proc = _spawn(space, COMMCARE_CASE_PAGE_SIZE=10)
    try:
        _wait_for(conn, space.domain, _loading_cases, proc)
        with pytest.raises(RunConflict, match="already in progress"):
            space.run()
    finally:
        _kill(proc)
