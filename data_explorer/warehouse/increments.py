"""Applying a plan (transform/increments.py) to the published tables, and what was published.

``<raw>._published`` holds one row: the run whose tables are published, the
fingerprint of what its SQL was compiled from, the source generations it saw,
its plan, and the watermark: the database time at which its transform began
to read the raw tables. Raw rows loaded at or after the watermark
(``_loaded_at``, set by every insert and upsert) are the ones the published
tables may not reflect. The row is written in the publishing transaction, so
it always describes what agents see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from data_explorer.transform.dbt import ModelResult
from data_explorer.transform.increments import KeySet, Plan, PlanUnavailable, Step
from data_explorer.warehouse import catalog
from data_explorer.warehouse.naming import TenantNames

# Above this share of a raw table's rows changed, rebuilding is cheaper than
# deleting and inserting them again, and leaves no dead rows behind.
MAX_CHANGED_SHARE = 0.2

# A keyed step reads and writes the rows of a few keys, at most that share: looked up by index, pages
# mostly cached. PostgreSQL's default cost of a random page read (4, for spinning disks) makes it
# scan whole tables instead; and compiling a statement's expressions (JIT) costs more than running it.
# A rebuilt step reads whole tables, which the defaults suit.
KEYED_PLANNER_SETTINGS = {"random_page_cost": "1.1", "jit": "off"}


@dataclass(frozen=True)
class Published:
    run_id: str
    fingerprint: str
    watermark: datetime
    generations: dict[str, Any]
    plan: Plan | None
    reason: str | None  # why there is no plan


def read_published(conn: psycopg.Connection, raw_schema: str) -> Published | None:
    """What was published; PlanUnavailable when its plan cannot be read."""
    row = conn.execute(
        sql.SQL("SELECT run_id::text, fingerprint, watermark, generations, plan, reason FROM {}._published").format(
            sql.Identifier(raw_schema)
        )
    ).fetchone()
    if row is None:
        return None
    run_id, fingerprint, watermark, generations, plan, reason = row
    return Published(run_id, fingerprint, watermark, generations, Plan.from_json(plan) if plan is not None else None, reason)


def save_published(conn: psycopg.Connection, raw_schema: str, published: Published) -> None:
    """Call in the publishing transaction."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {}._published (run_id, fingerprint, watermark, generations, plan, reason) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (singleton) DO UPDATE SET run_id = EXCLUDED.run_id, fingerprint = EXCLUDED.fingerprint,"
            " watermark = EXCLUDED.watermark, generations = EXCLUDED.generations, plan = EXCLUDED.plan,"
            " reason = EXCLUDED.reason, updated_at = now()"
        ).format(sql.Identifier(raw_schema)),
        (published.run_id, published.fingerprint, published.watermark, Jsonb(published.generations),
         Jsonb(published.plan.to_json()) if published.plan is not None else None, published.reason),
    )


def source_generations(conn: psycopg.Connection, raw_schema: str) -> dict[str, list]:
    """Each source's full-pass generation and whether a full pass is unfinished."""
    rows = conn.execute(
        sql.SQL("SELECT source, generation, full_pending FROM {}._sync_state").format(sql.Identifier(raw_schema))
    ).fetchall()
    return {source: [generation, pending] for source, generation, pending in rows}


def database_now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]


class TooManyChanges(PlanUnavailable):
    pass


def _changed_keys(conn: psycopg.Connection, raw_schema: str, key: KeySet, index: int, watermark: datetime) -> sql.Identifier:
    """A temporary table of the distinct keys of raw rows loaded since the watermark; TooManyChanges past the share."""
    temp = sql.Identifier(f"_changed_{index}")
    raw = sql.SQL("{}.{}").format(sql.Identifier(raw_schema), sql.Identifier(key.table))
    column = sql.Identifier(key.column)
    changed = conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT DISTINCT {} AS key FROM {} WHERE _loaded_at >= %s AND {} IS NOT NULL"
        ).format(temp, column, raw, column),
        (watermark,),
    ).rowcount
    conn.execute(sql.SQL("ANALYZE {}").format(temp))  # so joins on it are planned for its real size
    if changed:
        estimate = conn.execute(
            "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (raw_schema, key.table),
        ).fetchone()[0]
        total = estimate if estimate > 0 else conn.execute(sql.SQL("SELECT count(*) FROM {}").format(raw)).fetchone()[0]
        if changed > MAX_CHANGED_SHARE * total:
            raise TooManyChanges(
                f"{changed:,} {key.column} values changed in {key.table}, which holds about {int(total):,} rows; "
                "rebuilding is cheaper"
            )
    return temp


def _table_columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    found = catalog.columns(conn, schema, table)
    if not found:
        raise PlanUnavailable(f"the published schema has no table {table}")
    return [c["name"] for c in found]


def _matches(column: str, sets: tuple[KeySet, ...], temps: dict[KeySet, sql.Identifier]) -> sql.Composable:
    keys = sql.SQL(" UNION ").join(sql.SQL("SELECT key FROM {}").format(temps[k]) for k in sets)
    return sql.SQL("m.{} IN ({})").format(sql.Identifier(column), keys)  # a (hashed) semi-join, never a scan of a list


def _plan_lookups(conn: psycopg.Connection, lookups: bool) -> None:
    """The planner settings of a keyed step when ``lookups``, else the defaults; for the transaction."""
    for setting, value in KEYED_PLANNER_SETTINGS.items():
        conn.execute(sql.SQL("SET LOCAL {} TO {}").format(sql.Identifier(setting), sql.Literal(value) if lookups else sql.SQL("DEFAULT")))


def _apply_step(conn: psycopg.Connection, schema: str, step: Step, temps: dict[KeySet, sql.Identifier]) -> int:
    """Replace the step's rows: those of the changed keys, or all of them. Returns rows written."""
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(step.name))
    columns = sql.SQL(", ").join(map(sql.Identifier, _table_columns(conn, schema, step.name)))
    matches = [_matches(column, sets, temps) for column, sets in step.keys]
    _plan_lookups(conn, step.keyed)
    if not step.keyed:
        conn.execute(sql.SQL("DELETE FROM {}").format(target))
        selections = [sql.SQL("")]
    else:
        # One statement per key column (inserts skipping the rows of the ones before): a single
        # condition lets PostgreSQL look the keys up by index, where an OR across columns makes it
        # test every row of the table, or build the whole model first.
        for match in matches:
            conn.execute(sql.SQL("DELETE FROM {} AS m WHERE ").format(target) + match)
        selections = [
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join([match] + [sql.SQL("NOT coalesce({}, false)").format(m) for m in matches[:i]])
            for i, match in enumerate(matches)
        ]
    # The compiled SQL is sent as it is (no parameters, so a '%' in it is just a character); the line
    # breaks keep a trailing comment in it from swallowing the closing parenthesis.
    insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM (\n").format(target, columns, columns)
    return sum(conn.execute(insert + sql.SQL(step.select) + sql.SQL("\n) AS m") + where).rowcount for where in selections)


def apply_plan(conn: psycopg.Connection, names: TenantNames, plan: Plan, watermark: datetime) -> list[ModelResult]:
    """Bring the published tables up to date with the raw rows loaded since ``watermark``.

    Call inside the publishing transaction; the statements run as the tenant's
    writer, which owns the tables. Readers keep seeing the previous rows until
    the commit (row locks only, no table lock). Raises TooManyChanges when
    rebuilding would be cheaper, PlanUnavailable when the published tables no
    longer match the plan, psycopg errors as they come.
    """
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(names.writer_role)))
    temps = {key: _changed_keys(conn, names.raw_schema, key, i, watermark) for i, key in enumerate(plan.key_sets)}
    results = []
    for step in plan.steps:
        started = time.monotonic()
        rows = _apply_step(conn, names.schema, step, temps)
        results.append(ModelResult(step.name, "success", round(time.monotonic() - started, 3), rows))
    _plan_lookups(conn, False)
    conn.execute("RESET ROLE")
    return results
