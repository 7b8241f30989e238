"""Rows reach a raw table straight by COPY when nothing can conflict, through the stage otherwise."""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from psycopg import sql

from data_explorer.pipelines.registry import SQL_TYPES, Column, Table
from data_explorer.warehouse.batches import copy_rows, create_stage, merge_stage, stage_rows

TABLE = Table(
    name="things", description="d", primary_key=("id",),
    columns=(Column(name="id", type="text", description="d"), Column(name="body", type="jsonb", description="d")),
)


def _write(conn, schema, rows, generation, table=TABLE):
    names = table.column_names
    with conn.transaction():
        staged = stage_rows(table, names, rows, generation)
        if copy_rows(conn, schema, table, names, staged):
            merge_stage(conn, schema, table, names)
            return "staged"
        return "direct"


@pytest.fixture
def schema(conn):
    name = f"t_{secrets.token_hex(4)}"
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    conn.commit()
    yield name
    conn.rollback()
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
    conn.commit()


def _create(conn, schema, table):
    columns = [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type)) for c in table.columns]
    conn.execute(sql.SQL("CREATE TABLE {}.{} ({}, _generation bigint NOT NULL, _loaded_at timestamptz NOT NULL DEFAULT now(),"
                         " PRIMARY KEY (id))").format(sql.Identifier(schema), sql.Identifier(table.name), sql.SQL(", ").join(columns)))
    conn.commit()
    with conn.transaction():
        create_stage(conn, schema, table, table.column_names)


def test_new_rows_go_straight_in_and_repeats_are_upserted(conn, schema):
    _create(conn, schema, TABLE)
    # repeats within a batch collapse to the last; a first load needs no stage
    assert _write(conn, schema, [("a", '{"v":1}'), ("b", '{"v":1}'), ("a", '{"v":2}')], 1) == "direct"
    assert _write(conn, schema, [("c", '{"v":1}')], 1) == "direct"
    assert _write(conn, schema, [("b", '{"v":3}'), ("d", '{"v":"t\\tab"}')], 2) == "staged"
    # the stage is empty again after each commit
    assert _write(conn, schema, [("b", '{"v":4}')], 2) == "staged"
    rows = conn.execute(sql.SQL("SELECT id, body, _generation FROM {}.things ORDER BY id").format(sql.Identifier(schema))).fetchall()
    assert rows == [("a", {"v": 2}, 1), ("b", {"v": 4}, 2), ("c", {"v": 1}, 1), ("d", {"v": "t\tab"}, 2)]


EVERY_TYPE = Table(
    name="typed", description="d", primary_key=("id",),
    columns=(Column(name="id", type="text", description="d"),
             *(Column(name=f"c{i}", type=t, description="d") for i, t in enumerate(SQL_TYPES))),
)
VALUES = {
    "text": "tab\t, newline\n, backslash \\ and \u00e9\U0001f600", "integer": -2_147_483_648, "bigint": 2**62, "boolean": False,
    "timestamptz": datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    "date": date(1, 1, 1), "numeric": Decimal("-12345678901234567890.000000000001"), "double precision": -1.5e-300,
    "jsonb": '{"a":"\\u00e9 \\" \\\\ \\n","b":[1,2.5,null,true],"c":{}}',
}


def test_every_column_type_arrives_as_the_loader_gave_it(conn, schema):
    _create(conn, schema, EVERY_TYPE)
    row = ("x", *(VALUES[t] for t in SQL_TYPES))
    nulls = ("y", *(None for _ in SQL_TYPES))
    assert _write(conn, schema, [row, nulls], 1, EVERY_TYPE) == "direct"
    assert _write(conn, schema, [row], 2, EVERY_TYPE) == "staged"
    stored = conn.execute(sql.SQL("SELECT * FROM {}.typed ORDER BY id").format(sql.Identifier(schema))).fetchall()
    expected = [*row[:-1], {"a": "\u00e9 \" \\ \n", "b": [1, 2.5, None, True], "c": {}}]
    assert [list(r[:-2]) for r in stored] == [expected, list(nulls)]
    assert [r[-2] for r in stored] == [2, 1]



@pytest.mark.parametrize("kind, value, given", [
    ("timestamptz", "2024-01-01T00:00:00Z", "str"),
    ("timestamptz", datetime(2024, 1, 1), "datetime"),  # no time zone: which instant is unknown
    ("jsonb", {"a": 1}, "dict"), ("numeric", 1.5, "float"), ("text", 7, "int"),
])
def test_a_value_of_another_type_than_its_column_names_the_column_and_writes_nothing(conn, schema, kind, value, given):
    _create(conn, schema, EVERY_TYPE)
    column = f"c{SQL_TYPES.index(kind)}"
    good = ("ok", *(VALUES[t] for t in SQL_TYPES))
    bad = [*good]
    bad[0], bad[1 + SQL_TYPES.index(kind)] = "bad", value
    with pytest.raises(TypeError, match=rf"typed\.{column} is declared {kind} in the pipeline, but the loader gave {given} "):
        _write(conn, schema, [good, tuple(bad)], 1, EVERY_TYPE)
    assert conn.execute(sql.SQL("SELECT count(*) FROM {}.typed").format(sql.Identifier(schema))).fetchone() == (0,)
