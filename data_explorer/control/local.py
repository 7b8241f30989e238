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
from data_explorer.pipelines.status import TERMINAL, RunStatus
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.database import Database
from data_explorer.warehouse.locks import held_by_someone
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
        self._cancelling: set[str] = set()
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
        self.reap()
        row = self._with_conn(get_run, self.control, run_id)
        return RunView.from_row(row) if row else None

    async def cancel_run(self, run_id: str) -> RunView:
        """Stop the run's process for real; Conflict when it runs where no signal from here reaches it."""
        row = await self._row(run_id)
        if row is None:
            raise NotFound(f"no run {run_id}")
        if row["phase"] in TERMINAL:
            return RunView.from_row(row)
        target = _signal_target(row["pid"] or 0, run_id, row["domain"])
        if target is None:
            if await asyncio.to_thread(self._with_conn, held_by_someone, row["domain"]):
                raise Conflict(
                    f"run {run_id} is carried out by a process this gateway cannot signal (pid {row['pid']}, "
                    "started elsewhere, e.g. by data-explorer materialize on another machine): stop it there",
                    {"run_id": run_id},
                )
            await asyncio.to_thread(self._with_conn, finish_run, self.control, run_id, "Cancelled", "CANCELLED",
                                    "cancelled before its runner started")
            return RunView.from_row(await self._row(run_id))
        pid, group = target
        self._cancelling.add(run_id)
        try:
            return await self._stop(run_id, row["domain"], pid, group)
        finally:
            self._cancelling.discard(run_id)

    async def _stop(self, run_id: str, domain: str, pid: int, group: bool) -> RunView:
        _send(pid, signal.SIGTERM, group)
        deadline = time.monotonic() + self.cancel_grace
        message = "the run was cancelled; the published data is unchanged"
        while _signal_target(pid, run_id, domain) is not None:
            if time.monotonic() > deadline:
                _send(pid, signal.SIGKILL, group)
                message = f"the runner did not stop within {self.cancel_grace:.0f}s and was killed; the published data is unchanged"
                break
            await asyncio.sleep(POLL)
        # it recorded its own end, or died before it could: either way the run ends Cancelled unless it had finished
        await asyncio.to_thread(self._with_conn, finish_run, self.control, run_id, "Cancelled", "CANCELLED", message)
        child = self._children.pop(run_id, None)
        if child is not None:
            await asyncio.to_thread(child.wait)  # it has exited: collect it
        return RunView.from_row(await self._row(run_id))

    async def _row(self, run_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._with_conn, get_run, self.control, run_id)

    def _with_conn(self, fn, *args):
        with self.db.connect(autocommit=True) as conn:
            return fn(conn, *args)

    def reap(self) -> None:
        """Collect every runner child that has exited (no zombies), and end as RUNNER_LOST the runs
        whose runner died without recording their end (a crash, an OOM kill)."""
        exited = [
            (run_id, child.returncode) for run_id, child in list(self._children.items())
            if run_id not in self._cancelling and child.poll() is not None
        ]
        if not exited:
            return
        with self.db.connect(autocommit=True) as conn:
            for run_id, code in exited:
                self._children.pop(run_id, None)
                finish_run(conn, self.control, run_id, "Failed", "RUNNER_LOST",
                           f"the runner exited with status {code} before finishing")  # a no-op when it finished

    async def maintain(self) -> None:
        await asyncio.to_thread(self.reap)

    async def close(self) -> None:
        await self.maintain()  # runners still going are left to finish on their own


def _signal_target(pid: int, run_id: str, domain: str) -> tuple[int, bool] | None:
    """(pid, whether it leads a process group) of the live process carrying out this run, or None.
    Guards against a recycled pid: the command line must be this run's runner, or a
    ``data-explorer materialize`` of this domain."""
    if pid <= 0:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        command = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if "runner" in command and run_id in command:
        return pid, True
    if "materialize" in command and "--domain" in command and domain in command:
        return pid, False  # the user's own command: signal it alone, not its shell's group
    return None


def _send(pid: int, sig: signal.Signals, group: bool) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except ProcessLookupError:
        pass
