"""Tenant phases through runs, teardown and the idle-schema sweep."""

from __future__ import annotations

import asyncio
import time

import pytest

from data_explorer.control.local import LocalControlPlane
from data_explorer.control.states import IllegalTransition, set_tenant_phase
from data_explorer.mcp_gateway.calls import Caller
from data_explorer.mcp_gateway.gateway import Gateway
from data_explorer.warehouse.query import QueryExecutor


def _phase(conn, domain):
    row = conn.execute("SELECT phase FROM data_explorer.tenants WHERE domain = %s", (domain,)).fetchone()
    return row[0] if row else None


def test_a_run_moves_the_tenant_through_materializing_and_back(space, conn):
    assert space.run().phase == "Succeeded"
    assert _phase(conn, space.domain) == "Active"
    space.sim.set_faults({"rules": [{"kind": "unauthorized", "rate": 1.0}]})
    assert space.run().phase == "Failed"
    assert _phase(conn, space.domain) == "Active"  # what was published stays queryable
    with pytest.raises(IllegalTransition, match="TearingDown to Active"):
        set_tenant_phase(conn, "data_explorer", space.domain, "TearingDown")
        set_tenant_phase(conn, "data_explorer", space.domain, "Active")


def test_idle_schemas_are_torn_down_by_the_sweep_and_keep_their_metadata(space, conn):
    settings = space.settings(DATA_EXPLORER_SCHEMA_TTL_HOURS=0.0003)  # about one second
    assert space.run().phase == "Succeeded"

    async def identify(ctx):
        return Caller("nobody", ())

    async def sweep():
        gateway = Gateway(settings, space.db, LocalControlPlane(settings, space.db), QueryExecutor(space.db.dsn), identify, "stdio")
        try:
            assert space.domain not in await gateway.sweep_once()  # not idle yet (other tests' tenants may be)
            time.sleep(1.5)
            return await gateway.sweep_once()
        finally:
            await gateway.close()

    assert space.domain in asyncio.run(sweep())
    assert _phase(conn, space.domain) is None
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (space.names.schema,)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (space.names.reader_role,)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM data_explorer.tenant_metadata WHERE domain = %s", (space.domain,)).fetchone()[0] == 1
    assert space.run().phase == "Succeeded"  # and it comes back on the next run
