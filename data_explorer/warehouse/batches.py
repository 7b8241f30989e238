"""Writing one batch of rows: COPY into a temporary stage, then upsert by primary key.

Callers run this inside the transaction that also writes the checkpoint. Rows
repeated within a batch (the Case API may return a record twice during a pull)
are collapsed to their last occurrence before COPY, because an upsert cannot
touch the same row twice in one statement.

A stage is a temporary table created once per connection and emptied by every
commit or rollback (``ON COMMIT DELETE ROWS``), so a batch costs no DDL; each
table is therefore written at most once per transaction, and never in autocommit.

Rows go in COPY's binary format: PostgreSQL reads each value by its length
instead of undoing COPY's text escapes, and takes timestamps the loader has
already parsed instead of parsing them again; psycopg sends text as it is
instead of escaping it. That is about a sixth of PostgreSQL's CPU for a load
and a tenth of the runner's. So each value must be of its column's Python type
(``PYTHON_TYPES``); jsonb values are JSON text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, Collection, Iterable, Sequence

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

from data_explorer.pipelines.registry import Table

# what a value of each column type must be in a row (None is NULL in every column); timestamps
# carry their time zone
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "integer": (int,), "bigint": (int,), "boolean": (bool,), "timestamptz": (datetime,),
    "date": (date,), "numeric": (Decimal, int), "double precision": (float, int), "jsonb": (str,),
}


class JsonText(Dumper):
    """jsonb in binary COPY from JSON text the loader made: the format's version byte, then the text."""

    format = Format.BINARY
    oid = psycopg.postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


def dedupe_last(rows: Iterable[Sequence], key_positions: Sequence[int]) -> list[Sequence]:
    """Keep the last row for each primary key, placed where its last version was. Pure."""
    latest: dict[tuple, Sequence] = {}
    for row in rows:
        key = tuple(row[i] for i in key_positions)
        latest.pop(key, None)
        latest[key] = row
    return list(latest.values())


def _stage(table: Table) -> sql.Identifier:
    return sql.Identifier(f"_stage_{table.name}")


def _columns(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def prefer_lz4(conn: psycopg.Connection) -> None:
    """Compress large values (form trees) with lz4 when the server has it: several times cheaper than pglz.

    Set for the session; values already stored keep their method, and reading handles both.
    """
    row = conn.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'").fetchone()
    if row and row[0]:
        conn.execute("SET default_toast_compression = 'lz4'")


def create_stage(conn: psycopg.Connection, raw_schema: str, table: Table, names: Sequence[str]) -> None:
    """The table's stage with the columns ``names`` and ``_generation``, if this connection has none yet."""
    conn.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS SELECT {}, _generation FROM {}.{} WITH NO DATA").format(
            _stage(table), _columns(names), sql.Identifier(raw_schema), sql.Identifier(table.name)
        )
    )


@dataclass(frozen=True)
class StagedRows:
    """One table's rows of a batch, repeats collapsed, each with its generation, ready to send."""

    count: int
    rows: list[tuple]
    leading_keys: list  # the distinct values of the first primary-key column


class Unencodable(ValueError):
    """A value could not be encoded for COPY (a lone surrogate): replace it and send again. (PostgreSQL
    refuses a NUL itself, with an error ``UNSTORABLE`` in loading.py also catches.)"""


def stage_rows(table: Table, names: Sequence[str], rows: Sequence[Sequence], generation: int) -> StagedRows:
    """Pure, so it can run ahead in another thread."""
    positions = [names.index(k) for k in table.primary_key]
    keys = list(map(itemgetter(*positions), rows))
    if len(set(keys)) < len(keys):  # rare: checked in compiled code first, collapsed in Python only when needed
        rows = dedupe_last(rows, positions)
    leading = map(itemgetter(positions[0]), rows)
    return StagedRows(len(rows), [(*row, generation) for row in rows], list(dict.fromkeys(leading)))


def any_stored(conn: psycopg.Connection, raw_schema: str, table: Table, keys: list | None = None) -> bool:
    """Whether any row of the table holds one of ``keys`` in its first key column (any row at all
    without ``keys``)."""
    ident = sql.Identifier
    target = sql.SQL("{}.{}").format(ident(raw_schema), ident(table.name))
    if keys is None:
        return conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(target)).fetchone()[0]
    return conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {} = ANY(%b))").format(target, ident(table.primary_key[0])),
        (keys,),
        prepare=False,  # planned for the table as it is now: a plan kept from when it was empty would scan it all
    ).fetchone()[0]


def copy_types(table: Table, names: Sequence[str]) -> list[str]:
    """The types of the columns COPY writes: ``names``, then ``_generation``."""
    return [table.column(n).type for n in names] + ["bigint"]


def copy_rows(
    conn: psycopg.Connection, raw_schema: str, table: Table, names: Sequence[str], staged: StagedRows,
    cleared: Collection = (), *, as_new: bool = False,
) -> bool:
    """COPY the rows; True when they went to the stage and ``merge_stage`` must upsert them.

    When no row of the table shares even the first key column with them (a first load, or keys known
    to be absent, held in ``cleared``: children whose rows were just deleted, parents found not stored),
    nothing can conflict: they go straight into the table, which saves PostgreSQL writing them twice.
    ``as_new``: straight in without looking anything up; a key already stored then violates the primary key.
    """
    clash = (not as_new and not set(staged.leading_keys).issubset(cleared)
             and any_stored(conn, raw_schema, table, staged.leading_keys))
    into = _stage(table) if clash else sql.SQL("{}.{}").format(sql.Identifier(raw_schema), sql.Identifier(table.name))
    types = copy_types(table, names)
    cursor = conn.cursor()
    cursor.adapters.register_dumper(None, JsonText)  # used for jsonb columns by set_types
    with cursor.copy(sql.SQL("COPY {} ({}, _generation) FROM STDIN (FORMAT BINARY)").format(into, _columns(names))) as copy:
        copy.set_types(types)
        try:
            for row in staged.rows:  # formatted by psycopg's compiled code: many times cheaper than in Python
                copy.write_row(row)
        except UnicodeEncodeError as exc:  # raised here, before anything reaches the server
            raise Unencodable(str(exc).splitlines()[0]) from exc
        except (TypeError, ValueError, OverflowError, AttributeError):  # a value psycopg cannot dump as its column's type
            raise TypeError(mistyped(table, [*names, "_generation"], types, staged.rows)) from None
    return clash


def _fits(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) is not (kind == "boolean"):  # a bool is an int to isinstance
        return False
    if isinstance(value, datetime):  # and a datetime a date
        return kind == "timestamptz" and value.tzinfo is not None
    return isinstance(value, PYTHON_TYPES[kind])


def mistyped(table: Table, names: Sequence[str], types: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Which value does not fit its column's type: a loader that disagrees with its pipeline file."""
    for row in rows:
        for name, kind, value in zip(names, types, row):
            if not _fits(kind, value):
                return (f"{table.name}.{name} is declared {kind} in the pipeline, but the loader gave "
                        f"{type(value).__name__} {value!r:.60}: the pipeline file and its loader disagree")
    return f"{table.name}: a value does not fit its column's type, though each is of the expected Python type"


def merge_stage(conn: psycopg.Connection, raw_schema: str, table: Table, names: Sequence[str]) -> psycopg.Cursor:
    """Upsert the staged rows into the raw table by primary key; the cursor's rowcount, once the
    statement has run, is how many rows were inserted or changed.

    A row stored already, the same in every column and of this pass's generation (a record a look-back
    window or a page boundary sent again), is left as it is: not written again, and not marked as
    loaded now, so the next transform does not take it for a change."""
    ident = sql.Identifier
    updates = ["_generation"] + [n for n in names if n not in table.primary_key]  # a new pass differs at once
    return conn.execute(
        sql.SQL(
            "INSERT INTO {target} AS stored ({cols}, _generation, _loaded_at) SELECT {cols}, _generation, now() FROM {stage} "
            "ON CONFLICT ({pk}) DO UPDATE SET {sets}, _loaded_at = now() "
            "WHERE ({old}) IS DISTINCT FROM ({new})"
        ).format(
            target=sql.SQL("{}.{}").format(ident(raw_schema), ident(table.name)),
            cols=_columns(names),
            stage=_stage(table),
            pk=_columns(table.primary_key),
            sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(ident(n)) for n in updates),
            old=sql.SQL(", ").join(sql.SQL("stored.{}").format(ident(n)) for n in updates),
            new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(ident(n)) for n in updates),
        )
    )


def upsert_rows(
    conn: psycopg.Connection, raw_schema: str, table: Table, names: Sequence[str], rows: Sequence[Sequence], generation: int
) -> int:
    """COPY rows whose values are in the order of ``names`` and upsert them; return rows written."""
    if not rows:
        return 0
    create_stage(conn, raw_schema, table, names)
    staged = stage_rows(table, names, rows, generation)
    if copy_rows(conn, raw_schema, table, names, staged):
        merge_stage(conn, raw_schema, table, names)
    return staged.count


def delete_children(conn: psycopg.Connection, raw_schema: str, table: Table, parent_keys: Sequence[str]) -> None:
    """Delete a child table's rows for these parents, before their fresh rows are written.

    Key lists go in binary (``%b``): psycopg builds a text array literal in Python, several times slower.
    """
    if not parent_keys or table.parent is None:
        return
    conn.execute(
        sql.SQL("DELETE FROM {}.{} WHERE {} = ANY(%b)").format(
            sql.Identifier(raw_schema), sql.Identifier(table.name), sql.Identifier(table.parent.key)
        ),
        (list(parent_keys),),
    )


def count_rows(conn: psycopg.Connection, raw_schema: str, table: Table, generation: int | None = None) -> int:
    """Rows of the table, or of one pass's generation."""
    query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(raw_schema), sql.Identifier(table.name))
    if generation is None:
        return conn.execute(query).fetchone()[0]
    return conn.execute(query + sql.SQL(" WHERE _generation = %s"), (generation,)).fetchone()[0]


def delete_stale(conn: psycopg.Connection, raw_schema: str, table: Table, generation: int) -> int:
    """After a full pass: delete rows the pass did not write. Returns rows deleted."""
    cur = conn.execute(
        sql.SQL("DELETE FROM {}.{} WHERE _generation < %s").format(sql.Identifier(raw_schema), sql.Identifier(table.name)),
        (generation,),
    )
    return cur.rowcount
