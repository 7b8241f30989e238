"""Tearing a tenant down safely: under the tenant lock, never under a run."""

from __future__ import annotations

import psycopg

from data_explorer.control.base import Conflict
from data_explorer.control.states import begin_teardown
from data_explorer.warehouse.locks import tenant_lock
from data_explorer.warehouse.naming import TenantNames
from data_explorer.warehouse.provisioning import teardown_tenant
from data_explorer.warehouse.tenant_state import unfinished_run


def teardown(conn: psycopg.Connection, control: str, names: TenantNames, *, expired: bool = False) -> bool:
    """Drop the tenant's schemas and roles, keeping metadata and run history; True if anything existed.

    Conflict while a run is recorded unfinished or holds the tenant lock: a run
    never loses its schema under it, and none starts while this holds the lock.
    """
    with tenant_lock(conn, names.domain) as got:
        active = unfinished_run(conn, control, names.domain)
        if not got or active:
            run = f" (run {active['run_id']})" if active else ""
            raise Conflict(
                f"a materialization of {names.domain!r} is in progress{run}: cancel_materialization it first",
                {"run_id": str(active["run_id"])} if active else {},
            )
        begin_teardown(conn, control, names.domain, expired=expired)
        return teardown_tenant(conn, names, control)
