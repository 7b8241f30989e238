"""Per-source sync checkpoints, stored next to the data they describe.

A checkpoint is written in the same transaction as the batch it follows, so a
run killed at any point resumes exactly after the last committed batch.

``generation`` numbers full passes. A full pass (the first run, ``--full``, or
a source without a change filter) takes a new generation and sets
``full_pending``; rows it writes carry that generation; when the pass
completes, rows of older generations are deleted and ``full_pending`` cleared.
A pass interrupted by a kill is resumed by the next run, whatever its mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class Checkpoint:
    source: str
    generation: int
    full_pending: bool
    cursor: dict[str, Any] | None = field(default=None)
    rows_total: int = 0
    counts: dict[str, Any] | None = None  # the last completed full pass's counts, beside the server's


def read_checkpoint(conn: psycopg.Connection, raw_schema: str, source: str) -> Checkpoint | None:
    row = conn.execute(
        sql.SQL("SELECT generation, full_pending, cursor, rows_total, counts FROM {}._sync_state WHERE source = %s").format(
            sql.Identifier(raw_schema)
        ),
        (source,),
    ).fetchone()
    if row is None:
        return None
    return Checkpoint(source, row[0], row[1], row[2], row[3], row[4])


def write_checkpoint(conn: psycopg.Connection, raw_schema: str, cp: Checkpoint) -> None:
    """Upsert the checkpoint; call inside the transaction that wrote the rows."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {}._sync_state (source, generation, full_pending, cursor, rows_total, counts, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, now())"
            " ON CONFLICT (source) DO UPDATE SET generation = EXCLUDED.generation,"
            " full_pending = EXCLUDED.full_pending, cursor = EXCLUDED.cursor,"
            " rows_total = EXCLUDED.rows_total, counts = EXCLUDED.counts, updated_at = now()"
        ).format(sql.Identifier(raw_schema)),
        (cp.source, cp.generation, cp.full_pending, Jsonb(cp.cursor) if cp.cursor is not None else None, cp.rows_total,
         Jsonb(cp.counts) if cp.counts is not None else None),
    )


def start_pass(previous: Checkpoint | None, source: str, *, full: bool) -> Checkpoint:
    """The checkpoint a run starts from: resume, continue incrementally, or begin a full pass."""
    if previous is not None and previous.full_pending:
        return previous  # an interrupted full pass is finished first, whatever was asked
    if previous is None or full:
        generation = 1 if previous is None else previous.generation + 1
        return Checkpoint(source, generation, True, None, 0, None if previous is None else previous.counts)
    return Checkpoint(source, previous.generation, False, previous.cursor, 0, previous.counts)
