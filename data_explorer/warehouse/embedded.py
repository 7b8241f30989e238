"""The embedded PostgreSQL server (pgserver) that runs in the data directory.

Started on first use, reused by every later start (and by the runner child
processes, which attach without owning it), stopped when the process that
started it exits. pgserver counts handles by process id in a file; a process
killed with SIGKILL never removes its id, so dead ids are pruned before each
attach or the server would never stop.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedPostgresError(RuntimeError):
    pass


def _prune_dead_handles(pgdata: Path) -> None:
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        handles.unlink(missing_ok=True)
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """One server per data directory. ``owner=False`` attaches without ever stopping it."""

    def __init__(self, data_dir: Path, *, owner: bool = True):
        self.pgdata = Path(data_dir).expanduser().resolve()
        self.owner = owner
        self._server = None

    def start(self) -> str:
        """Start (or attach to) the server; return a connection URL."""
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # pgserver keeps its lock there
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver.postgres_server import PostgresServer
        self.pgdata.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with PostgresServer._lock:
                if self.pgdata.exists():
                    _prune_dead_handles(self.pgdata)
            self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop" if self.owner else None)
        except Exception as exc:  # pgserver raises assorted errors; the log file says why
            logfile = self.pgdata / "log"
            hint = f" See {logfile}." if logfile.exists() else ""
            raise EmbeddedPostgresError(f"The embedded PostgreSQL in {self.pgdata} did not start: {exc}.{hint}") from exc
        _private(self.pgdata.parent)
        url = self._server.get_uri()
        log.info("embedded PostgreSQL ready in %s", self.pgdata)
        return url

    def stop(self) -> None:
        """Release this process's handle; the server stops when no live process holds one."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _private(directory: Path) -> None:
    """Make the data directory the user's alone, if it is ours. As root, pgserver runs the server as a
    user of its own and opens the directories above the server's to others; traversing them is all that
    user needs, so listing them is taken back (0711)."""
    mode = 0o711 if os.geteuid() == 0 else 0o700
    info = directory.stat()
    if info.st_uid == os.getuid() and info.st_mode & 0o777 != mode:
        directory.chmod(mode)
