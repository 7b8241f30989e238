"""Writing one batch of rows: COPY into a temporary stage, then upsert by primary key.

Callers run this inside the transaction that also writes the checkpoint. Rows
repeated within a batch (the Case API may return a record twice during a pull)
are collapsed to their last occurrence before COPY, because an upsert cannot
touch the same row twice in one statement.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import psycopg
from psycopg import sql

from data_explorer.pipelines.registry import Table


def dedupe_last(rows: Iterable[Sequence], key_positions: Sequence[int]) -> list[Sequence]:
    """Keep the last row for each primary key, placed where its last version was. Pure."""
    latest: dict[tuple, Sequence] = {}
    for row in rows:
        key = tuple(row[i] for i in key_positions)
        latest.pop(key, None)
        latest[key] = row
    return list(latest.values())


def _stage_name(table: Table) -> str:
    return f"_stage_{table.name}"


def upsert_rows(
    conn: psycopg.Connection, raw_schema: str, table: Table, names: Sequence[str], rows: Sequence[Sequence], generation: int
) -> int:
    """COPY rows whose values are in the order of ``names`` and upsert them; return rows written."""
    if not rows:
        return 0
    ident = sql.Identifier
    key_positions = [names.index(k) for k in table.primary_key]
    rows = dedupe_last(rows, key_positions)
    stage = ident(_stage_name(table))
    column_list = sql.SQL(", ").join(map(ident, names))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT {} FROM {}.{} WITH NO DATA"
        ).format(stage, column_list, ident(raw_schema), ident(table.name))
    )
    conn.execute(sql.SQL("TRUNCATE {}").format(stage))
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, column_list)) as copy:
        for row in rows:
            copy.write_row(row)
    updates = [n for n in names if n not in table.primary_key] + ["_generation"]
    conn.execute(
        sql.SQL(
            "INSERT INTO {target} ({cols}, _generation, _loaded_at) SELECT {cols}, %s, now() FROM {stage} "
            "ON CONFLICT ({pk}) DO UPDATE SET {sets}, _loaded_at = now()"
        ).format(
            target=sql.SQL("{}.{}").format(ident(raw_schema), ident(table.name)),
            cols=column_list,
            stage=stage,
            pk=sql.SQL(", ").join(map(ident, table.primary_key)),
            sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(ident(n)) for n in updates),
        ),
        (generation,),
    )
    return len(rows)


def delete_children(conn: psycopg.Connection, raw_schema: str, table: Table, parent_keys: Sequence[str]) -> None:
    """Delete a child table's rows for these parents, before their fresh rows are written."""
    if not parent_keys or table.parent is None:
        return
    conn.execute(
        sql.SQL("DELETE FROM {}.{} WHERE {} = ANY(%s)").format(
            sql.Identifier(raw_schema), sql.Identifier(table.name), sql.Identifier(table.parent.key)
        ),
        (list(parent_keys),),
    )


def delete_stale(conn: psycopg.Connection, raw_schema: str, table: Table, generation: int) -> int:
    """After a full pass: delete rows the pass did not write. Returns rows deleted."""
    cur = conn.execute(
        sql.SQL("DELETE FROM {}.{} WHERE _generation < %s").format(sql.Identifier(raw_schema), sql.Identifier(table.name)),
        (generation,),
    )
    return cur.rowcount
