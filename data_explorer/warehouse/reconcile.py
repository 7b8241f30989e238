"""The stored side of the reconcile step: records by range of ``indexed_on``, at the millisecond the search
index compares at, and the removal of records CommCare no longer has.

Removing records takes the source's generation one further, as a full pass that removed rows would:
the next transform then builds every table instead of applying changes in place, which cannot see a
row that is gone.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql

from data_explorer.pipelines.registry import Source, Table

_MS = sql.SQL("date_trunc('milliseconds', {})")


def _target(raw_schema: str, table: Table) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(raw_schema), sql.Identifier(table.name))


def _within(column: str) -> sql.Composable:
    return sql.SQL("{} BETWEEN %s AND %s").format(_MS.format(sql.Identifier(column)))


def bounds(conn: psycopg.Connection, raw_schema: str, table: Table, column: str) -> tuple[datetime, datetime] | None:
    """The first and last millisecond of the stored records, or None when there are none."""
    ms = _MS.format(sql.Identifier(column))
    row = conn.execute(sql.SQL("SELECT min({0}), max({0}) FROM {1}").format(ms, _target(raw_schema, table))).fetchone()
    return None if row[0] is None else (row[0], row[1])


def count_between(conn: psycopg.Connection, raw_schema: str, table: Table, column: str, start: datetime, end: datetime) -> int:
    return conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {}").format(_target(raw_schema, table), _within(column)), (start, end)
    ).fetchone()[0]


def ids_between(conn: psycopg.Connection, raw_schema: str, table: Table, column: str, start: datetime, end: datetime) -> set[str]:
    key = sql.Identifier(table.primary_key[0])
    return {r[0] for r in conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE {}").format(key, _target(raw_schema, table), _within(column)), (start, end)
    )}


def middle(conn: psycopg.Connection, raw_schema: str, table: Table, column: str, start: datetime, end: datetime) -> datetime:
    """The millisecond that splits the stored records of the range about in half."""
    ms = _MS.format(sql.Identifier(column))
    return conn.execute(
        sql.SQL("SELECT {0} FROM {1} WHERE {2} ORDER BY 1 OFFSET (SELECT count(*) / 2 FROM {1} WHERE {2}) LIMIT 1").format(
            ms, _target(raw_schema, table), _within(column)
        ),
        (start, end, start, end),
    ).fetchone()[0]


def remove_records(conn: psycopg.Connection, raw_schema: str, source: Source, ids: list[str]) -> int:
    """Delete these records of the source's top table, their child rows with them, and move the source's
    generation on. Returns the records deleted. Call inside a transaction."""
    top = next(t for t in source.tables if t.parent is None)
    for table in source.tables:
        if table.parent is not None:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(_target(raw_schema, table), sql.Identifier(table.parent.key)),
                (ids,),
            )
    removed = conn.execute(
        sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(_target(raw_schema, top), sql.Identifier(top.primary_key[0])), (ids,)
    ).rowcount
    if removed:
        conn.execute(
            sql.SQL("UPDATE {}._sync_state SET generation = generation + 1 WHERE source = %s").format(sql.Identifier(raw_schema)),
            (source.name,),
        )
    return removed


def reconciled_at(conn: psycopg.Connection, raw_schema: str, source: str) -> datetime | None:
    row = conn.execute(
        sql.SQL("SELECT reconciled_at FROM {}._sync_state WHERE source = %s").format(sql.Identifier(raw_schema)), (source,)
    ).fetchone()
    return row[0] if row else None


def mark_reconciled(conn: psycopg.Connection, raw_schema: str, source: str, *, complete: bool = True) -> None:
    """A look that ended within its bound is good for an interval; one that did not leaves the source due."""
    conn.execute(
        sql.SQL("UPDATE {}._sync_state SET reconciled_at = CASE WHEN %s THEN now() END WHERE source = %s").format(
            sql.Identifier(raw_schema)
        ),
        (complete, source),
    )
