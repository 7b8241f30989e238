"""Rows reach a raw table straight by COPY when nothing can conflict, through the stage otherwise."""

from __future__ import annotations

import secrets

from psycopg import sql

from data_explorer.pipelines.registry import Column, Table
from data_explorer.warehouse.batches import copy_rows, create_stage, merge_stage, stage_rows

TABLE = Table(
    name="things", description="d", primary_key=("id",),
    columns=(Column(name="id", type="text", description="d"), Column(name="body", type="jsonb", description="d")),
)
NAMES = ("id", "body")


def _write(conn, schema, rows, generation):
    with conn.transaction():
        staged = stage_rows(TABLE, NAMES, rows, generation)
        if copy_rows(conn, schema, TABLE, NAMES, staged):
            merge_stage(conn, schema, TABLE, NAMES)
            return "staged"
        return "direct"


def test_new_rows_go_straight_in_and_repeats_are_upserted(conn):
    schema = f"t_{secrets.token_hex(4)}"
    ident = sql.Identifier
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident(schema)))
    try:
        conn.execute(sql.SQL("CREATE TABLE {}.things (id text PRIMARY KEY, body jsonb, _generation bigint NOT NULL,"
                             " _loaded_at timestamptz NOT NULL DEFAULT now())").format(ident(schema)))
        conn.commit()
        with conn.transaction():
            create_stage(conn, schema, TABLE, NAMES)
        # repeats within a batch collapse to the last; a first load needs no stage
        assert _write(conn, schema, [("a", '{"v":1}'), ("b", '{"v":1}'), ("a", '{"v":2}')], 1) == "direct"
        assert _write(conn, schema, [("c", '{"v":1}')], 1) == "direct"
        assert _write(conn, schema, [("b", '{"v":3}'), ("d", '{"v":"t\\tab"}')], 2) == "staged"
        # the stage is empty again after each commit
        assert _write(conn, schema, [("b", '{"v":4}')], 2) == "staged"
        rows = conn.execute(sql.SQL("SELECT id, body, _generation FROM {}.things ORDER BY id").format(ident(schema))).fetchall()
        assert rows == [("a", {"v": 2}, 1), ("b", {"v": 4}, 2), ("c", {"v": 1}, 1), ("d", {"v": "t\tab"}, 2)]
    finally:
        conn.rollback()
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident(schema)))
        conn.commit()
