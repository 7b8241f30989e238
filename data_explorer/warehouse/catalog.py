"""What a tenant schema holds, read from PostgreSQL's catalogs: relations, columns, comments, counts."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row


def relations(conn: psycopg.Connection, schema: str) -> list[dict[str, Any]]:
    """Tables and views of a schema: name, kind, comment."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT c.relname AS name, CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' ELSE 'table' END AS kind,"
            " obj_description(c.oid, 'pg_class') AS comment"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY c.relname",
            (schema,),
        )
        return cur.fetchall()


def columns(conn: psycopg.Connection, schema: str, relation: str) -> list[dict[str, Any]]:
    """Columns of one relation in order: name, type, nullable, comment."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable,"
            " col_description(c.oid, a.attnum) AS comment"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (schema, relation),
        )
        return cur.fetchall()


def relation_counts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    """Exact row counts of every table and view of a schema (at publish, for listings)."""
    counts = {}
    for relation in relations(conn, schema):
        counts[relation["name"]] = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(relation["name"]))
        ).fetchone()[0]
    return counts


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def schema_owners(conn: psycopg.Connection, schemas: tuple[str, ...]) -> dict[str, str]:
    """The owner of each of ``schemas`` that exists."""
    return dict(conn.execute(
        "SELECT n.nspname, r.rolname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = ANY(%s)",
        (list(schemas),),
    ).fetchall())
