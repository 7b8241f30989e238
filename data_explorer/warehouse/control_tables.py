"""The control schema: tenants, their metadata, runs, run credentials and the audit log.

These tables live apart from every tenant schema so that tenant metadata and
run history survive a teardown. They are created idempotently under an
advisory lock, so concurrent first starts do not race.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import psycopg
from psycopg import sql

_MIGRATION_LOCK = 0x6465_0001  # arbitrary, fixed: "de" + 1
AUDIT_APPEND_ARGUMENTS = "text, text, text, jsonb, text, text, integer, boolean, integer, text"

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
    # One unfinished run per tenant, enforced by the database across processes.
    "CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active_per_domain ON {s}.runs (domain)"
    " WHERE phase IN ('Pending', 'Discovering', 'Loading', 'Transforming')",
    "ALTER TABLE {s}.tenants ADD COLUMN IF NOT EXISTS reader_secret text",
    "ALTER TABLE {s}.tenants ADD COLUMN IF NOT EXISTS last_used_at timestamptz",
    """
    CREATE TABLE IF NOT EXISTS {s}.run_credentials (
        run_id        uuid PRIMARY KEY REFERENCES {s}.runs ON DELETE CASCADE,
        kind          text NOT NULL CHECK (kind IN ('api_key', 'oauth')),
        username      text,
        secret        text NOT NULL,
        refresh_secret text,
        expires_at    timestamptz,
        updated_at    timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS {s}.audit_log (
        id          bigserial PRIMARY KEY,
        at          timestamptz NOT NULL DEFAULT now(),
        principal   text NOT NULL,
        tenant      text,
        tool        text NOT NULL,
        arguments   jsonb NOT NULL,
        status      text NOT NULL CHECK (status IN ('ok', 'error')),
        error_code  text,
        rows        integer,
        truncated   boolean,
        duration_ms integer NOT NULL,
        transport   text
    )
    """,
    """
    CREATE OR REPLACE FUNCTION {s}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
    END
    $fn$
    """,
    "CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON {s}.audit_log"
    " FOR EACH ROW EXECUTE FUNCTION {s}.audit_log_append_only()",
    "CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {s}.audit_log"
    " FOR EACH STATEMENT EXECUTE FUNCTION {s}.audit_log_append_only()",
    # The one way in for the gateway: the database, not the caller, gives each row its id and time.
    """
    CREATE OR REPLACE FUNCTION {s}.audit_append(
        principal text, tenant text, tool text, arguments jsonb, status text, error_code text,
        rows integer, truncated boolean, duration_ms integer, transport text
    ) RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
        INSERT INTO {s}.audit_log (principal, tenant, tool, arguments, status, error_code, rows, truncated,
                                   duration_ms, transport)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id
    $fn$
    """,
    f"REVOKE ALL ON FUNCTION {{s}}.audit_append({AUDIT_APPEND_ARGUMENTS}) FROM PUBLIC",
]


# What the DDL above is, so that a schema already made by it is recognised without running it again.
_DDL_DIGEST = hashlib.sha256("\n".join(_DDL).encode()).hexdigest()


def ensure_control_tables(conn: psycopg.Connection, schema: str) -> None:
    """Create the control schema and tables if missing (idempotent, concurrency-safe).

    Once the schema is current this only reads one row: the DDL, even where it changes nothing,
    locks the tables it names (``ADD COLUMN IF NOT EXISTS`` takes the table's exclusive lock), and
    the operator and the gateway call this while a runner publishes, which holds row locks on
    ``tenants`` and ``runs``: the two would deadlock."""
    ident = sql.Identifier(schema)
    try:
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT digest FROM {}.control_version").format(ident)).fetchone()
        if row is not None and row[0] == _DDL_DIGEST:
            return
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        pass  # a first start
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        with acting_as(conn, audit_owner(conn, schema)):  # the sealed audit log's objects are its owner's
            for statement in _DDL:
                conn.execute(sql.SQL(statement).format(s=ident))
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.control_version (digest text NOT NULL)").format(ident))
        conn.execute(sql.SQL("DELETE FROM {}.control_version").format(ident))
        conn.execute(sql.SQL("INSERT INTO {}.control_version (digest) VALUES (%s)").format(ident), (_DDL_DIGEST,))


def audit_owner(conn: psycopg.Connection, schema: str) -> str | None:
    """The role that owns the audit log, when it is not the current user (once sealed); else None."""
    row = conn.execute(
        "SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'audit_log' AND tableowner <> current_user",
        (schema,),
    ).fetchone()
    return row[0] if row else None


@contextlib.contextmanager
def acting_as(conn: psycopg.Connection, role: str | None) -> Iterator[None]:
    """What changing ``role``'s objects takes for an admin that is not a superuser, for the block (in the
    caller's transaction): membership with SET (PostgreSQL 16 gives a role's creator ADMIN alone). Taken
    back afterwards, so that the admin cannot act as ``role`` outside such a block."""
    if role is None:
        yield
        return
    pg16 = conn.info.server_version >= 160000
    able = conn.execute(  # its privileges, and (16) becoming it: both are needed
        "SELECT pg_has_role(current_user, %s, 'USAGE') AND pg_has_role(current_user, %s, %s)",
        (role, role, "SET" if pg16 else "USAGE"),
    ).fetchone()[0]
    if not able:
        options = sql.SQL(" WITH INHERIT TRUE, SET TRUE" if pg16 else "")
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER{}").format(sql.Identifier(role), options))
    yield
    if not able:
        conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(sql.Identifier(role)))
