"""Tenant metadata from discover, kept in the control schema so it survives teardown."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb


def save_metadata(conn: psycopg.Connection, schema: str, domain: str, provider: str, metadata: dict[str, Any], run_id: str) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.tenant_metadata (domain, provider, metadata, discovered_at, run_id)"
            " VALUES (%s, %s, %s, now(), %s) ON CONFLICT (domain, provider) DO UPDATE"
            " SET metadata = EXCLUDED.metadata, discovered_at = now(), run_id = EXCLUDED.run_id"
        ).format(sql.Identifier(schema)),
        (domain, provider, Jsonb(metadata), run_id),
    )


def load_metadata(conn: psycopg.Connection, schema: str, domain: str, provider: str) -> dict[str, Any] | None:
    row = conn.execute(
        sql.SQL("SELECT metadata FROM {}.tenant_metadata WHERE domain = %s AND provider = %s").format(sql.Identifier(schema)),
        (domain, provider),
    ).fetchone()
    return row[0] if row else None
