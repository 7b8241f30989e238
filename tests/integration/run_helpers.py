"""Runner processes for the kill and fault tests: spawn `data-explorer materialize`, wait for a
point in its run, kill it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def spawn(space, **env) -> subprocess.Popen:
    settings_env = {**os.environ, **{k: str(v) for k, v in space.settings(**env).values.items() if v is not None}}
    return subprocess.Popen(
        [sys.executable, "-m", "data_explorer.cli", "materialize", "--domain", space.domain],
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


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
