"""The tenant (TenantSchema) state machine of design.md §3; the run's is in ``pipelines.status``.

Every phase change goes through these tables, in the control tables locally and
in the custom resources on Kubernetes. Locally, provisioning is one transaction,
so a tenant goes from Pending (no row) to Active at once; Provisioning and
Failed are what the operator shows while it provisions out of band.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from data_explorer.pipelines.status import IllegalTransition, check_transition

TENANT_TRANSITIONS: dict[str, frozenset[str]] = {
    "Pending": frozenset({"Provisioning", "Active", "Failed"}),
    "Provisioning": frozenset({"Active", "Failed"}),
    "Active": frozenset({"Materializing", "Expired", "TearingDown"}),
    "Materializing": frozenset({"Active"}),  # success or not, the tenant keeps what was published
    "Expired": frozenset({"TearingDown", "Materializing"}),
    "TearingDown": frozenset(),  # the row goes with the schema
    "Failed": frozenset({"Provisioning", "Active", "TearingDown"}),
}


def set_tenant_phase(conn: psycopg.Connection, control: str, domain: str, new: str) -> str | None:
    """Move a provisioned tenant to ``new``, checking the transition; return the old phase (None: no such tenant)."""
    with conn.transaction():
        row = conn.execute(
            sql.SQL("SELECT phase FROM {}.tenants WHERE domain = %s FOR UPDATE").format(sql.Identifier(control)), (domain,)
        ).fetchone()
        if row is None:
            return None
        check_transition(TENANT_TRANSITIONS, row[0], new, f"tenant {domain!r}")
        conn.execute(
            sql.SQL("UPDATE {}.tenants SET phase = %s, updated_at = now() WHERE domain = %s").format(sql.Identifier(control)),
            (new, domain),
        )
        return row[0]


def settle(conn: psycopg.Connection, control: str, domain: str) -> None:
    """A tenant left Materializing by a runner that died, with no run unfinished, is Active again."""
    conn.execute(
        sql.SQL(
            "UPDATE {0}.tenants t SET phase = 'Active', updated_at = now() WHERE t.domain = %s AND t.phase = 'Materializing'"
            " AND NOT EXISTS (SELECT 1 FROM {0}.runs r WHERE r.domain = t.domain"
            " AND r.phase NOT IN ('Succeeded', 'Failed', 'Cancelled'))"
        ).format(sql.Identifier(control)),
        (domain,),
    )


def begin_teardown(conn: psycopg.Connection, control: str, domain: str, *, expired: bool = False) -> None:
    """Active (or Expired, or Failed) -> [Expired ->] TearingDown, before the schemas and roles go."""
    settle(conn, control, domain)
    if expired:
        set_tenant_phase(conn, control, domain, "Expired")
    set_tenant_phase(conn, control, domain, "TearingDown")


__all__ = ["TENANT_TRANSITIONS", "IllegalTransition", "begin_teardown", "set_tenant_phase", "settle"]
