"""Runner processes for the kill and fault tests: spawn `data-explorer materialize`, wait for a
point in its run, kill it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def spawn(space, full: bool = False, **env) -> subprocess.Popen:
    settings_env = {**os.environ, **{k: str(v) for k, v in space.settings(**env).values.items() if v is not None}}
    return subprocess.Popen(
        [sys.executable, "-m", "data_explorer.cli", "materialize", "--domain", space.domain, *(["--full"] if full else [])],
        env=settings_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def latest_run(conn, domain):
    return conn.execute(
        "SELECT run_id, phase, phases FROM data_explorer.runs WHERE domain = %s ORDER BY created_at DESC LIMIT 1", (domain,)
    ).fetchone()


def wait_for(conn, domain, predicate, proc, timeout=120.0, *, until_exit_ok=False, after=None):
    """The run id once ``predicate(phase, phases)`` holds for the newest run (other than the run
    ``after``). With ``until_exit_ok`` a runner that ends first returns None instead of failing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = latest_run(conn, domain)
        if row and row[0] != after and predicate(row[1], row[2]):
            return row[0]
        if proc.poll() is not None:
            if until_exit_ok:
                return None
            raise AssertionError(f"the runner ended before the kill point:\n{proc.stdout.read()}")
        time.sleep(0.02)
    raise AssertionError("the kill point was never reached")


def lock_table(db, schema: str, table: str):
    """A session holding a lock on a table until it rolls back: a run that reaches the table (applying
    changes, or dbt building a model) stops on it in the middle of its work."""
    from psycopg import sql

    locker = db.connect()
    locker.execute(sql.SQL("LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema), sql.Identifier(table)))
    return locker


def waiting_on_a_lock(conn, proc, locker, timeout=60.0) -> None:
    """Until a session waits for the lock ``locker`` holds (the runner, stopped mid-transaction). Only a
    wait on that lock counts: a wait of another kind (the runner's sessions on each other, for moments)
    would let a test act before the runner has reached the lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (locker.info.backend_pid,)
        ).fetchone()[0]:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the runner ended before it stopped on the lock:\n{proc.stdout.read()}")
        time.sleep(0.02)
    raise AssertionError("the runner never stopped on the lock")


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
