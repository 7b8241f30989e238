"""Reading and touching tenant state in the control tables (for the gateway's status and listings)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from data_explorer.pipelines.status import TERMINAL


def _one(conn: psycopg.Connection, query: sql.Composable, params: tuple) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchone()


def tenant_row(conn: psycopg.Connection, control: str, domain: str) -> dict[str, Any] | None:
    return _one(
        conn,
        sql.SQL(
            "SELECT domain, schema_name, phase, created_at, last_materialized_at, last_run_id, last_used_at"
            " FROM {}.tenants WHERE domain = %s"
        ).format(sql.Identifier(control)),
        (domain,),
    )


def latest_run(conn: psycopg.Connection, control: str, domain: str, *, succeeded: bool = False) -> dict[str, Any] | None:
    condition = sql.SQL("AND phase = 'Succeeded'") if succeeded else sql.SQL("")
    return _one(
        conn,
        sql.SQL("SELECT * FROM {}.runs WHERE domain = %s {} ORDER BY created_at DESC LIMIT 1").format(
            sql.Identifier(control), condition
        ),
        (domain,),
    )


def unfinished_run(conn: psycopg.Connection, control: str, domain: str) -> dict[str, Any] | None:
    return _one(
        conn,
        sql.SQL("SELECT * FROM {}.runs WHERE domain = %s AND phase <> ALL(%s) ORDER BY created_at DESC LIMIT 1").format(
            sql.Identifier(control)
        ),
        (domain, list(TERMINAL)),
    )


def touch_tenant(conn: psycopg.Connection, control: str, domain: str) -> None:
    """Record use, which keeps the schema from expiring."""
    conn.execute(
        sql.SQL("UPDATE {}.tenants SET last_used_at = now() WHERE domain = %s").format(sql.Identifier(control)), (domain,)
    )


def idle_tenants(conn: psycopg.Connection, control: str, ttl_seconds: float) -> list[str]:
    """Provisioned tenants unused and not materialized for longer than the TTL, with no run in progress."""
    rows = conn.execute(
        sql.SQL(
            "SELECT t.domain FROM {0}.tenants t WHERE t.phase IN ('Active', 'Expired', 'Failed')"
            " AND greatest(t.created_at, t.last_used_at, t.last_materialized_at)"
            " < now() - make_interval(secs => %s)"
            " AND NOT EXISTS (SELECT 1 FROM {0}.runs r WHERE r.domain = t.domain AND r.phase <> ALL(%s))"
        ).format(sql.Identifier(control)),
        (ttl_seconds, list(TERMINAL)),
    ).fetchall()
    return [r[0] for r in rows]
