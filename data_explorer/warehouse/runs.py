"""Run rows in the control schema: created, updated as the run moves, read for status."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from data_explorer.pipelines.status import TERMINAL, RunStatus


PENDING_GRACE = "2 minutes"  # a run created by the gateway may wait this long for its runner to start


class ActiveRunExists(RuntimeError):
    def __init__(self, domain: str, run_id: str | None):
        super().__init__(
            f"a run for project space {domain!r} is already in progress"
            + (f" (run {run_id})" if run_id else "")
            + "; wait for it or cancel it"
        )
        self.run_id = run_id


def active_run(conn: psycopg.Connection, schema: str, domain: str) -> str | None:
    row = conn.execute(
        sql.SQL("SELECT run_id FROM {}.runs WHERE domain = %s AND phase <> ALL(%s)").format(sql.Identifier(schema)),
        (domain, list(TERMINAL)),
    ).fetchone()
    return str(row[0]) if row else None


def insert_run(conn: psycopg.Connection, schema: str, status: RunStatus, pid: int | None = None) -> None:
    """Record a new run; ActiveRunExists when the tenant already has an unfinished one."""
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.runs (run_id, domain, pipeline, mode, phase, phases, progress, pid)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(sql.Identifier(schema)),
                (status.run_id, status.domain, status.pipeline, status.mode, status.phase,
                 Jsonb(status.phases), Jsonb(status.progress), pid if pid is not None else os.getpid()),
            )
    except psycopg.errors.UniqueViolation:
        raise ActiveRunExists(status.domain, active_run(conn, schema, status.domain)) from None


def claim_run(conn: psycopg.Connection, schema: str, run_id: str) -> dict[str, Any] | None:
    """The runner child takes over a run the gateway created and is still Pending (not cancelled
    meanwhile): its pid goes on the row. None when there is no such pending run."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "UPDATE {}.runs SET pid = %s, updated_at = now() WHERE run_id = %s AND phase = 'Pending' RETURNING *"
            ).format(sql.Identifier(schema)),
            (os.getpid(), run_id),
        )
        return cur.fetchone()


def set_run_pid(conn: psycopg.Connection, schema: str, run_id: str, pid: int) -> None:
    conn.execute(
        sql.SQL("UPDATE {}.runs SET pid = %s, updated_at = now() WHERE run_id = %s").format(sql.Identifier(schema)),
        (pid, run_id),
    )


def finish_run(conn: psycopg.Connection, schema: str, run_id: str, phase: str, code: str, message: str) -> bool:
    """End an unfinished run from outside its runner (cancelled before it started, or killed). True if it was unfinished."""
    cur = conn.execute(
        sql.SQL(
            "UPDATE {}.runs SET phase = %s, error = %s, completed_at = now(), updated_at = now()"
            " WHERE run_id = %s AND phase <> ALL(%s)"
        ).format(sql.Identifier(schema)),
        (phase, Jsonb({"code": code, "message": message}), run_id, list(TERMINAL)),
    )
    # its runner may never have reached its own clean-up: no credential outlives the run
    conn.execute(sql.SQL("DELETE FROM {}.run_credentials WHERE run_id = %s").format(sql.Identifier(schema)), (run_id,))
    return cur.rowcount == 1


class RunAlreadyEnded(RuntimeError):
    code = "CANCELLED"


def lock_unfinished_run(conn: psycopg.Connection, schema: str, run_id: str) -> bool:
    """Lock the run's row for the rest of the transaction; False if it has already ended."""
    row = conn.execute(
        sql.SQL("SELECT phase FROM {}.runs WHERE run_id = %s FOR UPDATE").format(sql.Identifier(schema)), (run_id,)
    ).fetchone()
    return row is not None and row[0] not in TERMINAL


def save_run(conn: psycopg.Connection, schema: str, status: RunStatus) -> bool:
    """Write the run's status unless its row has already ended (cancelled from outside, say):
    an ended run is never brought back. False when nothing was written."""
    cur = conn.execute(
        sql.SQL(
            "UPDATE {}.runs SET phase = %s, phases = %s, progress = %s, error = %s,"
            " started_at = %s, completed_at = %s, updated_at = now() WHERE run_id = %s AND phase <> ALL(%s)"
        ).format(sql.Identifier(schema)),
        (status.phase, Jsonb(status.phases), Jsonb(status.progress),
         Jsonb(status.error) if status.error else None, status.started_at, status.completed_at, status.run_id,
         list(TERMINAL)),
    )
    return cur.rowcount == 1


def get_run(conn: psycopg.Connection, schema: str, run_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("SELECT * FROM {}.runs WHERE run_id = %s").format(sql.Identifier(schema)), (run_id,))
        return cur.fetchone()


def fail_abandoned_runs(conn: psycopg.Connection, schema: str, domain: str, keep: str) -> int:
    """Mark runs that never finished as Failed. Call only while holding the tenant's run lock,
    which proves no runner is alive for them (a killed runner cannot report its own end).
    ``keep`` is the run about to start, whose row may already exist."""
    error = {"code": "RUNNER_LOST", "message": "the runner stopped without finishing (killed or crashed); a later run resumed its work"}
    cur = conn.execute(
        sql.SQL(
            "UPDATE {}.runs SET phase = 'Failed', error = %s, completed_at = now(), updated_at = now()"
            " WHERE domain = %s AND phase <> ALL(%s) AND run_id <> %s"
            " AND (phase <> 'Pending' OR created_at < now() - %s::interval)"
        ).format(sql.Identifier(schema)),
        (Jsonb(error), domain, list(TERMINAL), keep, PENDING_GRACE),
    )
    return cur.rowcount
