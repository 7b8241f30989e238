"""Helpers shared by the operator tests."""

from __future__ import annotations

import secrets

import psycopg
from psycopg import sql


def new_domain() -> str:
    return f"op-{secrets.token_hex(3)}"


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def run_row(conn: psycopg.Connection, control: str, run_id: str) -> dict | None:
    from data_explorer.warehouse.runs import get_run

    return get_run(conn, control, run_id)


def tenant_row(conn: psycopg.Connection, control: str, domain: str):
    return conn.execute(sql.SQL("SELECT * FROM {}.tenants WHERE domain = %s").format(sql.Identifier(control)), (domain,)).fetchone()
