"""Provision and tear down a tenant: its schemas, its reader and writer roles, its row in the control tables.

The same functions serve the embedded mode (called in-line) and the operator.
All identifiers are quoted with ``sql.Identifier``; nothing derived from a
domain is ever formatted into SQL text.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from data_explorer.warehouse.naming import TenantNames

_ROLE_LOCK = 0x6465_0002  # roles are cluster-wide: serialise their creation


class TenantNameConflict(RuntimeError):
    pass


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def provision_tenant(conn: psycopg.Connection, names: TenantNames, control_schema: str) -> None:
    """Create the tenant's roles and private schema and register it; idempotent."""
    ident = sql.Identifier
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLE_LOCK,))
        owner = conn.execute(
            sql.SQL("SELECT domain, reader_role, writer_role FROM {}.tenants WHERE schema_name = %s").format(
                ident(control_schema)
            ),
            (names.schema,),
        ).fetchone()
        if owner and owner[0] != names.domain:
            raise TenantNameConflict(
                f"Project space {names.domain!r} maps to schema {names.schema!r}, "
                f"which project space {owner[0]!r} already uses. Tear that tenant down first."
            )
        if owner and (owner[1], owner[2]) != (names.reader_role, names.writer_role):
            raise TenantNameConflict(
                f"Project space {names.domain!r} was provisioned with roles {owner[1]!r} and {owner[2]!r}, "
                f"but DATA_EXPLORER_ROLE_PREFIX now makes them {names.reader_role!r} and {names.writer_role!r}. "
                "Set the prefix back, or tear the tenant down and materialize it again."
            )
        for role in (names.reader_role, names.writer_role):
            if not _role_exists(conn, role):
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(role)))
        # The login role acts as the writer while loading and must be able to
        # rename the writer's schemas when publishing.
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident(names.writer_role)))
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                ident(names.raw_schema), ident(names.writer_role)
            )
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.tenants (domain, schema_name, reader_role, writer_role, phase) "
                "VALUES (%s, %s, %s, %s, 'Active') "
                "ON CONFLICT (domain) DO UPDATE SET updated_at = now(), "
                "phase = CASE WHEN tenants.phase IN ('Pending', 'Provisioning', 'Expired') "
                "THEN 'Active' ELSE tenants.phase END"
            ).format(ident(control_schema)),
            (names.domain, names.schema, names.reader_role, names.writer_role),
        )


def teardown_tenant(conn: psycopg.Connection, names: TenantNames, control_schema: str) -> bool:
    """Drop the tenant's schemas and roles; keep its metadata and run history. True if anything existed."""
    ident = sql.Identifier
    existed = False
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLE_LOCK,))
        for schema in (names.schema, names.build_schema, names.old_schema, names.raw_schema):
            if _schema_exists(conn, schema):
                existed = True
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident(schema)))
        for role in (names.reader_role, names.writer_role):
            if _role_exists(conn, role):
                existed = True
                conn.execute(sql.SQL("DROP OWNED BY {}").format(ident(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(ident(role)))
        conn.execute(
            sql.SQL("DELETE FROM {}.tenants WHERE domain = %s").format(ident(control_schema)), (names.domain,)
        )
    return existed
