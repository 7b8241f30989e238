"""Building and publishing a run's tables.

dbt builds into ``<schema>__build``. Publishing swaps it for the tenant schema
in one transaction, together with the comments, the reader's grants and the
run's final status, so agents see either the previous run or this one, never
a mix, and a run killed before the commit leaves the published data untouched.
"""

from __future__ import annotations

from typing import Callable, Iterable

import psycopg
from psycopg import sql

from data_explorer.warehouse.catalog import schema_exists
from data_explorer.warehouse.naming import TenantNames

LOCK_TIMEOUT = "60s"  # a long query on the old tables delays the swap, but not forever



def reset_build_schema(conn: psycopg.Connection, names: TenantNames) -> None:
    """An empty build schema owned by the writer; leftovers of a killed run are dropped."""
    ident = sql.Identifier
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident(names.build_schema)))
        conn.execute(
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(ident(names.build_schema), ident(names.writer_role))
        )


def drop_build_schema(conn: psycopg.Connection, names: TenantNames) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(names.build_schema)))


Comment = tuple[str, str | None, str]  # (relation, column or None, text)


def existing_relations(conn: psycopg.Connection, schema: str) -> dict[str, set[str]]:
    """Tables and views of a schema with their columns."""
    rows = conn.execute(
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p')",
        (schema,),
    ).fetchall()
    out: dict[str, set[str]] = {}
    for relation, column in rows:
        out.setdefault(relation, set()).add(column)
    return out


def _apply_comments(conn: psycopg.Connection, schema: str, comments: Iterable[Comment]) -> None:
    present = existing_relations(conn, schema)
    kinds = dict(
        conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    )
    for relation, column, text in comments:
        if relation not in present or (column is not None and column not in present[relation]):
            continue
        target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(relation))
        if column is None:
            kind = sql.SQL("VIEW" if kinds.get(relation) == "v" else "TABLE")
            conn.execute(sql.SQL("COMMENT ON {} {} IS {}").format(kind, target, sql.Literal(text)))
        else:
            conn.execute(
                sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(target, sql.Identifier(column), sql.Literal(text))
            )


def publish(
    conn: psycopg.Connection,
    names: TenantNames,
    comments: Iterable[Comment],
    finish: Callable[[psycopg.Connection], None],
) -> None:
    """Swap the build schema in as the tenant schema; ``finish`` records the run in the same transaction."""
    ident = sql.Identifier
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        _apply_comments(conn, names.build_schema, comments)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(names.build_schema), ident(names.reader_role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(ident(names.build_schema), ident(names.reader_role))
        )
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident(names.old_schema)))
        if schema_exists(conn, names.schema):
            conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(ident(names.schema), ident(names.old_schema)))
        conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(ident(names.build_schema), ident(names.schema)))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident(names.old_schema)))
        finish(conn)
