"""The control schema: tenants, their metadata, and runs.

These tables live apart from every tenant schema so that tenant metadata and
run history survive a teardown. They are created idempotently under an
advisory lock, so concurrent first starts do not race.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

_MIGRATION_LOCK = 0x6465_0001  # arbitrary, fixed: "de" + 1

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """
    CREATE TABLE IF NOT EXISTS {s}.tenants (
        domain               text PRIMARY KEY,
        provider             text NOT NULL DEFAULT 'commcare',
        schema_name          text NOT NULL UNIQUE,
        reader_role          text NOT NULL,
        writer_role          text NOT NULL,
        phase                text NOT NULL DEFAULT 'Pending',
        created_at           timestamptz NOT NULL DEFAULT now(),
        updated_at           timestamptz NOT NULL DEFAULT now(),
        last_materialized_at timestamptz,
        last_run_id          uuid
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS {s}.tenant_metadata (
        domain        text NOT NULL,
        provider      text NOT NULL,
        metadata      jsonb NOT NULL,
        discovered_at timestamptz NOT NULL DEFAULT now(),
        run_id        uuid,
        PRIMARY KEY (domain, provider)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS {s}.runs (
        run_id       uuid PRIMARY KEY,
        domain       text NOT NULL,
        pipeline     text NOT NULL,
        mode         text NOT NULL CHECK (mode IN ('full', 'incremental')),
        phase        text NOT NULL,
        phases       jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        progress     jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        error        jsonb,
        pid          integer,
        created_at   timestamptz NOT NULL DEFAULT now(),
        started_at   timestamptz,
        completed_at timestamptz,
        updated_at   timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX IF NOT EXISTS runs_domain_created ON {s}.runs (domain, created_at DESC)",
]


def ensure_control_tables(conn: psycopg.Connection, schema: str) -> None:
    """Create the control schema and tables if missing (idempotent, concurrency-safe)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        for statement in _DDL:
            conn.execute(sql.SQL(statement).format(s=sql.Identifier(schema)))
