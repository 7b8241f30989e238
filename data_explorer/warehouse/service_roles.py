"""The gateway's audit login: a role that may append to and read the audit log, and nothing else.

Audit rows are written in sessions logged in as it, so the process that writes
them cannot alter or remove them even by privilege, not only because the
triggers refuse. Its password is random and kept encrypted in the control schema.
"""

from __future__ import annotations

import secrets

import psycopg
from psycopg import sql

from data_explorer.warehouse.audit import grant_audit_writer, seal_audit_log
from data_explorer.warehouse.provisioning import close_database_to_public, grant_connect
from data_explorer.warehouse.secrets import SecretBox, SecretError

_LOCK = 0x6465_0003


def audit_role_name(role_prefix: str, control: str) -> str:
    return f"{role_prefix}_{control}_audit"[:63]


def audit_owner_name(role_prefix: str, control: str) -> str:
    return f"{role_prefix}_{control}_audit_owner"[:63]


def ensure_audit_login(conn: psycopg.Connection, control: str, role_prefix: str, box: SecretBox) -> tuple[str, str]:
    """(role, password) of the audit login, created on first use; idempotent and concurrency-safe."""
    role = audit_role_name(role_prefix, control)
    ident = sql.Identifier
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {}.service_logins (role text PRIMARY KEY, secret text NOT NULL)").format(
                ident(control)
            )
        )
        row = conn.execute(
            sql.SQL("SELECT secret FROM {}.service_logins WHERE role = %s").format(ident(control)), (role,)
        ).fetchone()
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None
        close_database_to_public(conn)
        seal_audit_log(conn, control, audit_owner_name(role_prefix, control))
        if exists:
            grant_connect(conn, role)
            grant_audit_writer(conn, control, role)  # what an earlier version granted is narrowed
        if row and exists:
            try:
                return role, box.decrypt(row[0])
            except SecretError:
                pass  # the key changed: a new password replaces the one nobody can read any more
        password = secrets.token_urlsafe(32)
        hashed = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN NOINHERIT CONNECTION LIMIT 10 PASSWORD {}").format(sql.SQL(verb), ident(role), sql.Literal(hashed))
        )
        grant_audit_writer(conn, control, role)
        grant_connect(conn, role)
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.service_logins (role, secret) VALUES (%s, %s)"
                " ON CONFLICT (role) DO UPDATE SET secret = EXCLUDED.secret"
            ).format(ident(control)),
            (role, box.encrypt(password)),
        )
        return role, password
