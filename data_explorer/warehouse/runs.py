"""Run rows in the control schema: created, updated as the run moves, read for status."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from data_explorer.pipelines.status import TERMINAL, RunStatus


def insert_run(conn: psycopg.Connection, schema: str, status: RunStatus) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.runs (run_id, domain, pipeline, mode, phase, phases, progress, pid)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(schema)),
        (status.run_id, status.domain, status.pipeline, status.mode, status.phase,
         Jsonb(status.phases), Jsonb(status.progress), os.getpid()),
    )


def save_run(conn: psycopg.Connection, schema: str, status: RunStatus) -> None:
    conn.execute(
        sql.SQL(
            "UPDATE {}.runs SET phase = %s, phases = %s, progress = %s, error = %s,"
            " started_at = %s, completed_at = %s, updated_at = now() WHERE run_id = %s"
        ).format(sql.Identifier(schema)),
        (status.phase, Jsonb(status.phases), Jsonb(status.progress),
         Jsonb(status.error) if status.error else None, status.started_at, status.completed_at, status.run_id),
    )


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
        ).format(sql.Identifier(schema)),
        (Jsonb(error), domain, list(TERMINAL), keep),
    )
    return cur.rowcount
