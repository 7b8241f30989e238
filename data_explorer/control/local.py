"""The local control plane: run state in the control tables, one child process per run.

A run is created Pending (the unique index refuses a second unfinished run of a
tenant), its runner is started as ``data-explorer runner --run-id ...`` in a new
session (so it outlives the gateway and can be signalled as a process group),
and it reports through the run's row. Cancelling sends SIGTERM to the group,
waits for the runner to record Cancelled, and sends SIGKILL after a grace
period, recording Cancelled itself; the published data is untouched either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from data_explorer.config import Settings
from data_explorer.control.base import Conflict, ControlError, NotFound, RunView
from data_explorer.pipelines.status import RunStatus
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.database import Database
from data_explorer.warehouse.runs import ActiveRunExists, finish_run, get_run, insert_run, set_run_pid

log = logging.getLogger(__name__)

CANCEL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
POLL = 0.2
# Settings the runner child must not inherit: it gets its CommCare credential from the encrypted store.
_CHILD_SECRETS = ("COMMCARE_API_KEY", "COMMCARE_OAUTH_TOKEN", "COMMCARE_OAUTH_REFRESH_TOKEN", "COMMCARE_OAUTH_CLIENT_SECRET")


def child_environment(settings: Settings, *, with_credentials: bool) -> dict[str, str]:
    """The runner's environment: this process's, with every effective setting made explicit. Pure."""
    env = dict(os.environ)
    for key, value in settings.values.items():
        if value is not None:
            env[key] = str(value)
    if not with_credentials:
        for key in _CHILD_SECRETS:
            env.pop(key, None)
    return env


def _is_our_runner(pid: int, run_id: str) -> bool:
    """Guard against a recycled pid: the process must be the runner of this run."""
    try:
        return run_id in " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


class LocalControlPlane:
    def __init__(self, settings: Settings, db: Database, *, cancel_grace: float = CANCEL_GRACE, store_credential=None):
        self.settings = settings
        self.db = db
        self.control = settings.control_schema
        self.cancel_grace = cancel_grace
        # (conn, run_id, credential) -> None: keeps the caller's credential encrypted for the runner;
        # without it the runner uses the credential in the settings.
        self._store_credential = store_credential
        self._children: dict[str, subprocess.Popen] = {}
        with db.connect(autocommit=True) as conn:
            ensure_control_tables(conn, self.control)

    # -- runs ---------------------------------------------------------------

    async def start_run(self, domain: str, pipeline: str, full: bool, credential: Any = None) -> RunView:
        return await asyncio.to_thread(self._start, domain, pipeline, full, credential)

    def _start(self, domain: str, pipeline: str, full: bool, credential: Any) -> RunView:
        status = RunStatus(str(uuid.uuid4()), domain, pipeline, "full" if full else "incremental")
        with self.db.connect(autocommit=True) as conn:
            try:
                insert_run(conn, self.control, status, pid=0)
            except ActiveRunExists as exc:
                raise Conflict(str(exc), {"run_id": exc.run_id}) from None
            stored = False
            if credential is not None and self._store_credential is not None:
                self._store_credential(conn, status.run_id, credential)
                stored = True
            logs = self.settings.home / "runs"
            logs.mkdir(parents=True, exist_ok=True)
            try:
                with open(logs / f"{status.run_id}.log", "ab") as out:
                    child = subprocess.Popen(
                        [sys.executable, "-m", "data_explorer.cli", "runner", "--run-id", status.run_id],
                        env=child_environment(self.settings, with_credentials=not stored),
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True, cwd=Path.cwd(),
                    )
            except OSError as exc:
                finish_run(conn, self.control, status.run_id, "Failed", "INTERNAL_ERROR", f"the runner could not start: {exc}")
                raise ControlError(f"the runner could not start: {exc}") from None
            set_run_pid(conn, self.control, status.run_id, child.pid)
            self._children[status.run_id] = child
            return RunView.from_row(get_run(conn, self.control, status.run_id))

    async def get_run(self, run_id: str) -> RunView | None:
        return await asyncio.to_thread(self._get, run_id)

    def _get(self, run_id: str) -> RunView | None:
        with self.db.connect(autocommit=True) as conn:
            row = get_run(conn, self.control, run_id)
            if row is None:
                return None
            child = self._children.get(run_id)
            if child is not None and child.poll() is not None:
                self._children.pop(run_id, None)
                if row["phase"] not in ("Succeeded", "Failed", "Cancelled"):
                    # the runner died without recording its end (crash, OOM kill)
                    finish_run(conn, self.control, run_id, "Failed", "RUNNER_LOST",
                               f"the runner exited with status {child.returncode} before finishing")
                    row = get_run(conn, self.control, run_id)
            return RunView.from_row(row)

    async def cancel_run(self, run_id: str) -> RunView:
        return await asyncio.to_thread(self._cancel, run_id)

    def _cancel(self, run_id: str) -> RunView:
        with self.db.connect(autocommit=True) as conn:
            row = get_run(conn, self.control, run_id)
            if row is None:
                raise NotFound(f"no run {run_id}")
            if row["phase"] in ("Succeeded", "Failed", "Cancelled"):
                return RunView.from_row(row)
            pid = row["pid"] or 0
            if pid <= 0 or not _is_our_runner(pid, run_id):
                finish_run(conn, self.control, run_id, "Cancelled", "CANCELLED", "cancelled before its runner started")
                return RunView.from_row(get_run(conn, self.control, run_id))
            self._signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.cancel_grace
            while time.monotonic() < deadline:
                row = get_run(conn, self.control, run_id)
                alive = _is_our_runner(pid, run_id)
                if not alive:
                    # gone: it recorded its end, or it died before it could (e.g. signalled while starting)
                    finish_run(conn, self.control, run_id, "Cancelled", "CANCELLED", "the run was cancelled; the published data is unchanged")
                    break
                time.sleep(POLL)
            else:
                self._signal(pid, signal.SIGKILL)
                finish_run(conn, self.control, run_id, "Cancelled", "CANCELLED",
                           f"the runner did not stop within {self.cancel_grace:.0f}s and was killed; the published data is unchanged")
            self._reap(run_id)
            return RunView.from_row(get_run(conn, self.control, run_id))

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)  # the runner leads its own process group
        except ProcessLookupError:
            pass

    def _reap(self, run_id: str) -> None:
        child = self._children.pop(run_id, None)
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._children[run_id] = child

    async def close(self) -> None:
        for run_id in list(self._children):
            child = self._children[run_id]
            if child.poll() is not None:
                self._children.pop(run_id)
