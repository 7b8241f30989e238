"""The fault suite: the runner killed at twenty random points, faults at 10% on every
endpoint, PostgreSQL connections terminated mid-run. Whatever breaks, agents only ever see a
complete run, and the next run ends with exactly the simulator's counts and no duplicates."""

from __future__ import annotations

import random
import time

import pytest
from psycopg import sql
from run_helpers import kill, latest_run, lock_table, spawn, wait_for, waiting_on_a_lock

pytestmark = [pytest.mark.fault, pytest.mark.slow]

PHASES = ("Pending", "Discovering", "Loading", "Transforming", "Succeeded", "Failed", "Cancelled")
# What to slow down so that a kill aimed at a phase lands inside it.
SLOW_SCOPE = {"Discovering": ("apps", 1.0), "Loading": ("cases", 0.15)}
KEYS = {"cases": "case_id", "forms": "form_id", "users": "user_id"}


def _reached(target: str):
    return lambda phase, phases: PHASES.index(phase) >= PHASES.index(target)


def _assert_exact(space, conn) -> None:
    """Exactly the simulator's records, each once."""
    for table, count in space.expected().items():
        key = KEYS[table]
        total, distinct = conn.execute(
            sql.SQL("SELECT count(*), count(DISTINCT {}) FROM {}.{}").format(
                sql.Identifier(key), sql.Identifier(space.names.schema), sql.Identifier(table))
        ).fetchone()
        assert (total, distinct) == (count, count), f"{table}: {total} rows, {distinct} distinct, simulator has {count}"


def test_sigkill_at_twenty_random_points_never_exposes_a_partial_run(space_factory, conn):
    rng = random.Random(20261126)
    space = space_factory(cases=300, forms=150)
    assert space.run().phase == "Succeeded"
    published = space.published(conn)
    landed: dict[str, int] = {}
    for attempt in range(20):
        space.sim.mutate(space.domain, update_cases=rng.randint(1, 15), new_cases=rng.randint(0, 8), new_forms=rng.randint(0, 8))
        target = rng.choice(("Discovering", "Loading", "Transforming"))
        full = rng.random() < 0.4  # dbt building every table; otherwise the changes applied in place
        scope, delay = SLOW_SCOPE.get(target, (None, 0))
        space.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": scope}], "slow_delay": delay} if scope else {})
        previous = latest_run(conn, space.domain)[0]
        proc = spawn(space, full=full, COMMCARE_CASE_PAGE_SIZE=25, COMMCARE_FORM_PAGE_SIZE=25)
        run_id = wait_for(conn, space.domain, _reached(target), proc, until_exit_ok=True, after=previous)
        time.sleep(rng.uniform(0, 0.3))
        finished = proc.poll() is not None
        if finished and proc.returncode != 0:
            raise AssertionError(f"the runner failed on its own:\n{proc.stdout.read()}")
        if not finished:
            kill(proc)
        phase = latest_run(conn, space.domain)[1] if run_id else "Succeeded"
        landed[phase] = landed.get(phase, 0) + 1
        now = space.published(conn)
        if phase == "Succeeded":
            published = now  # it published before the kill (or exited first): a newer complete run
        else:
            assert now == published, f"kill {attempt + 1} (aimed at {target}, landed in {phase}) exposed a partial run"
    assert {"Discovering", "Loading", "Transforming"} <= set(landed), f"kills landed only in {landed}"
    space.sim.set_faults({})
    status = space.run()
    assert status.phase == "Succeeded", status.error
    _assert_exact(space, conn)
    lost = conn.execute("SELECT count(*) FROM data_explorer.runs WHERE domain = %s AND phase NOT IN "
                        "('Succeeded', 'Failed', 'Cancelled')", (space.domain,)).fetchone()[0]
    assert lost == 0, "a killed run was left unfinished after the next run"


@pytest.mark.parametrize("rules", [
    [{"kind": "rate_limit", "rate": 0.1}, {"kind": "rate_limit_bare", "rate": 0.1}],
    [{"kind": "server_error", "rate": 0.1}],
    [{"kind": "drop_before_headers", "rate": 0.1}, {"kind": "drop_mid_body", "rate": 0.1}],
    [{"kind": k, "rate": 0.1} for k in ("rate_limit", "server_error", "drop_before_headers", "drop_mid_body")],
], ids=["429", "5xx", "dropped", "all-at-once"])
def test_ten_percent_faults_end_with_exact_counts(space_factory, conn, rules):
    space = space_factory(cases=400, forms=200)
    space.sim.set_faults({"rules": rules, "seed": 11, "retry_after": 0})
    status = space.run(COMMCARE_CASE_PAGE_SIZE=20, COMMCARE_FORM_PAGE_SIZE=20, COMMCARE_USER_PAGE_SIZE=5, COMMCARE_MAX_RETRIES=30)
    assert status.phase == "Succeeded", status.error
    fired = space.sim.stats()["faults"]
    assert sum(fired.get(rule["kind"], 0) for rule in rules) >= 3, f"faults barely fired ({fired}): the test proves little"
    _assert_exact(space, conn)
    # and incrementally, under the same faults
    space.sim.mutate(space.domain, update_cases=25, new_cases=10, new_forms=10)
    status = space.run(COMMCARE_CASE_PAGE_SIZE=20, COMMCARE_FORM_PAGE_SIZE=20, COMMCARE_MAX_RETRIES=30)
    assert status.phase == "Succeeded", status.error
    _assert_exact(space, conn)


def test_every_request_refused_fails_fast_with_an_auth_error(space_factory):
    space = space_factory(cases=50)
    space.sim.set_faults({"rules": [{"kind": "unauthorized", "rate": 1.0}]})
    started = time.monotonic()
    status = space.run(COMMCARE_MAX_RETRIES=30)
    assert time.monotonic() - started < 10
    assert status.phase == "Failed" and status.error["code"] == "AUTH_FAILED"
    assert space.sim.stats()["total"] == 1


def _terminate_others(conn) -> int:
    return len(conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall())


def _transforming(phase, phases):
    return phase == "Transforming" and phases.get("transform", {}).get("state") == "running"


def _loading(phase, phases):
    return phase == "Loading" and phases.get("load", {}).get("cases", {}).get("rows", 0) > 0


def _applying(phase, phases):
    return phase == "Transforming"


def _publishing(phase, phases):
    return phase == "Transforming" and phases.get("transform", {}).get("state") == "done"


@pytest.mark.parametrize("point", [_loading, _transforming, _publishing, _applying],
                         ids=["during-load", "during-transform", "during-publish", "while-applying"])
def test_postgres_connections_terminated_mid_run_publish_nothing_partial(space_factory, db, point):
    space = space_factory(cases=300, forms=100)
    assert space.run().phase == "Succeeded"
    with db.connect(autocommit=True) as watcher:
        before = space.published(watcher)
        space.sim.mutate(space.domain, update_cases=30, new_cases=10)
        if point is _loading:
            space.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 0.2})
        previous = latest_run(watcher, space.domain)[0]
        # the publish of a full run, and the changes an incremental run applies, are one transaction
        # each, held here on a lock on a published table
        locker = lock_table(db, space.names.schema, "form_submissions") if point in (_publishing, _applying) else None
        proc = spawn(space, full=point in (_transforming, _publishing), COMMCARE_CASE_PAGE_SIZE=10)
        if locker:
            waiting_on_a_lock(watcher, proc, locker)
        wait_for(watcher, space.domain, point, proc, after=previous)
        if point is _transforming:
            # dbt builds every table in a full run: a raw table it reads, locked as dbt starts (it takes a
            # second to load), holds dbt in the middle of its models, before anything can be published
            locker = lock_table(db, space.names.raw_schema, "users")
            waiting_on_a_lock(watcher, proc, locker)
        assert _terminate_others(watcher) >= 1
        output, _ = proc.communicate(timeout=120)
        if locker:
            locker.close()
    assert proc.returncode != 0, f"the run claimed success after losing its connections:\n{output}"
    assert "PostgreSQL" in output or "DATABASE" in output or "transform" in output.lower(), output
    with db.connect(autocommit=True) as conn:
        ended = latest_run(conn, space.domain)
        assert ended[1] == "Failed", f"the run's row says {ended[1]} after it lost its sessions:\n{output}"
        if point is _transforming:
            assert ended[2]["transform"]["state"] == "failed", f"dbt was not stopped in its models:\n{output}"
        if point is _publishing:
            assert ended[2]["transform"]["state"] == "done" and "publish" not in ended[2], f"not stopped in the publish:\n{output}"
        assert space.published(conn) == before, "a run that lost its connections changed what agents see"
        space.sim.set_faults({})
        status = space.run()
        assert status.phase == "Succeeded", status.error
        _assert_exact(space, conn)

