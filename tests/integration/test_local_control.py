"""The local control plane: a child process per run, one unfinished run per tenant, real cancel."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from data_explorer.control.base import Conflict
from data_explorer.control.local import LocalControlPlane

pytestmark = pytest.mark.slow


def _until(plane, run_id, phases, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = asyncio.run(plane.get_run(run_id))
        if run.phase in phases:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run never reached {phases}")


def test_a_run_executes_in_a_child_process_and_reports_through_its_row(space, conn):
    plane = LocalControlPlane(space.settings(), space.db)
    run = asyncio.run(plane.start_run(space.domain, "commcare_sync", False))
    assert run.phase == "Pending"
    pid = conn.execute("SELECT pid FROM data_explorer.runs WHERE run_id = %s", (run.run_id,)).fetchone()[0]
    assert pid and pid != os.getpid()
    with pytest.raises(Conflict, match="already in progress"):
        asyncio.run(plane.start_run(space.domain, "commcare_sync", False))
    done = _until(plane, run.run_id, ("Succeeded", "Failed", "Cancelled"))
    assert done.phase == "Succeeded", done.error
    assert space.count(conn, "cases") == space.expected()["cases"]
    log = (space.settings().home / "runs" / f"{run.run_id}.log").read_text()
    assert "Succeeded" in log


def test_cancel_terminates_the_process_group_and_keeps_published_data(space, conn):
    plane = LocalControlPlane(space.settings(), space.db)
    assert space.run().phase == "Succeeded"
    before = space.published(conn)
    space.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 0.5})
    run = asyncio.run(plane.start_run(space.domain, "commcare_sync", True))
    _until(plane, run.run_id, ("Loading",))
    pid = conn.execute("SELECT pid FROM data_explorer.runs WHERE run_id = %s", (run.run_id,)).fetchone()[0]
    started = time.monotonic()
    cancelled = asyncio.run(plane.cancel_run(run.run_id))
    assert cancelled.phase == "Cancelled" and time.monotonic() - started < 15
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert space.published(conn) == before


def test_a_runner_that_ignores_sigterm_is_killed_after_the_grace_period(space, conn):
    plane = LocalControlPlane(space.settings(), space.db, cancel_grace=1.0)
    space.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "apps"}], "slow_delay": 30})
    run = asyncio.run(plane.start_run(space.domain, "commcare_sync", False))
    pid = conn.execute("SELECT pid FROM data_explorer.runs WHERE run_id = %s", (run.run_id,)).fetchone()[0]
    _until(plane, run.run_id, ("Discovering",))
    os.kill(pid, 19)  # SIGSTOP: it can no longer handle SIGTERM
    cancelled = asyncio.run(plane.cancel_run(run.run_id))
    assert cancelled.phase == "Cancelled" and "killed" in cancelled.error["message"]
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_cancelling_before_the_runner_starts(space, conn):
    from data_explorer.pipelines.status import RunStatus
    from data_explorer.warehouse.runs import insert_run

    plane = LocalControlPlane(space.settings(), space.db)
    status = RunStatus("11111111-1111-1111-1111-111111111111", space.domain, "commcare_sync", "incremental")
    insert_run(conn, "data_explorer", status, pid=0)
    cancelled = asyncio.run(plane.cancel_run(status.run_id))
    assert cancelled.phase == "Cancelled"


def test_a_cli_run_is_cancelled_by_signalling_the_command(space, conn):
    import subprocess
    import sys

    plane = LocalControlPlane(space.settings(), space.db)
    assert space.run().phase == "Succeeded"
    before = space.published(conn)
    space.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 0.5})
    env = {**os.environ, **{k: str(v) for k, v in space.settings(COMMCARE_CASE_PAGE_SIZE=10).values.items() if v is not None}}
    proc = subprocess.Popen([sys.executable, "-m", "data_explorer.cli", "materialize", "--domain", space.domain, "--full"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        row = conn.execute("SELECT run_id, phase FROM data_explorer.runs WHERE domain = %s ORDER BY created_at DESC LIMIT 1",
                           (space.domain,)).fetchone()
        if row[1] == "Loading":
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled = asyncio.run(plane.cancel_run(str(row[0])))
    assert cancelled.phase == "Cancelled" and cancelled.error["code"] == "CANCELLED"
    assert proc.wait(timeout=30) == 1  # it stopped on SIGTERM and said so, rather than being killed
    assert space.published(conn) == before


def test_a_run_held_elsewhere_cannot_be_marked_cancelled_from_here(space, conn):
    from data_explorer.control.base import Conflict as ControlConflict
    from data_explorer.pipelines.status import RunStatus
    from data_explorer.warehouse.control_tables import ensure_control_tables
    from data_explorer.warehouse.locks import tenant_lock
    from data_explorer.warehouse.runs import insert_run

    ensure_control_tables(conn, "data_explorer")
    plane = LocalControlPlane(space.settings(), space.db)
    status = RunStatus("22222222-2222-2222-2222-222222222222", space.domain, "commcare_sync", "incremental")
    insert_run(conn, "data_explorer", status, pid=999_999)  # a pid nothing here answers to
    with space.db.connect(autocommit=True) as elsewhere, tenant_lock(elsewhere, space.domain) as got:
        assert got
        with pytest.raises(ControlConflict, match="cannot signal"):
            asyncio.run(plane.cancel_run(status.run_id))
    assert conn.execute("SELECT phase FROM data_explorer.runs WHERE run_id = %s", (status.run_id,)).fetchone()[0] == "Pending"
    assert asyncio.run(plane.cancel_run(status.run_id)).phase == "Cancelled"  # nobody holds it any more


def test_finished_runners_are_collected_not_left_as_zombies(space, conn):
    import psutil

    plane = LocalControlPlane(space.settings(), space.db)
    run = asyncio.run(plane.start_run(space.domain, "commcare_sync", False))
    pid = conn.execute("SELECT pid FROM data_explorer.runs WHERE run_id = %s", (run.run_id,)).fetchone()[0]
    deadline = time.monotonic() + 120
    while conn.execute("SELECT phase FROM data_explorer.runs WHERE run_id = %s", (run.run_id,)).fetchone()[0] != "Succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    while True:  # it recorded its end; give it time to exit (dbt's clean-up, a loaded machine)
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            raise AssertionError("the runner vanished before maintain(): something else collected it") from None
        assert time.monotonic() < deadline, "the runner did not exit after recording its end"
        time.sleep(0.2)
    asyncio.run(plane.maintain())
    # A process whose main thread has exited shows as a zombie while its other threads still end, and
    # cannot be collected until they have: on a loaded machine that takes a moment, so maintain() (which
    # runs periodically in the product) is given a few passes.
    settle = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < settle:
        time.sleep(0.2)
        asyncio.run(plane.maintain())
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(pid).status()
