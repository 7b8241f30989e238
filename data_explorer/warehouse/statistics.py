"""Planner statistics gathered right after a full pass or a full build, for the run that follows.

Autovacuum analyzes a table some time after it changed much; the next run may come sooner. Without
statistics the planner takes a semi-join on a key to keep half the table: applying 1,000 changed cases
to 100,000 scanned and hashed whole tables (about 0.4 s more per run). So the columns a later run looks
rows up by are analyzed at once, on a small sample. ANALYZE with a column list leaves the table's
count of changes since its last analysis alone (only ANALYZE of every column resets it), so
autovacuum still analyzes every column in its time.
"""

from __future__ import annotations

from typing import Iterable

import psycopg
from psycopg import sql

from data_explorer.pipelines.registry import Table

SAMPLE_TARGET = 10  # statistics target for these: 3,000 sampled rows, enough to tell a key from a flag
UNSAMPLED_TYPES = frozenset({"jsonb"})  # documents: large to read, and nothing looks rows up by them


def analyze_columns(conn: psycopg.Connection, schema: str, table: str, columns: Iterable[str]) -> None:
    """ANALYZE these columns (at least one) of a table on a small sample; ``conn`` acts as its owner."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL default_statistics_target = {}").format(sql.Literal(SAMPLE_TARGET)))
        conn.execute(sql.SQL("ANALYZE {}.{} ({})").format(
            sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        ))


def analyze_raw(conn: psycopg.Connection, raw_schema: str, tables: Iterable[Table]) -> None:
    """Raw tables after a full pass: every column but the documents (models join and filter on any of
    them), and when each row was loaded (what an increment selects by)."""
    for table in tables:
        columns = [c.name for c in table.columns if c.type not in UNSAMPLED_TYPES]
        analyze_columns(conn, raw_schema, table.name, [*columns, "_loaded_at"])
