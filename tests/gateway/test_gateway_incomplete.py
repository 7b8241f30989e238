"""A load short of what CommCare reported is shown to agents: get_schema_status, list_tables and
get_materialization_status say which source is incomplete and by how much (official MCP client over
streamable HTTP; the run against the simulator over HTTP and the real PostgreSQL)."""

from __future__ import annotations

import pytest
from gateway_helpers import envelope, http_client
from psycopg import sql

from data_explorer.pipelines.runner import RunRequest, materialize
from data_explorer.warehouse.naming import TenantNames

pytestmark = pytest.mark.anyio


async def test_agents_see_which_source_came_up_short(world, http_gateway, conn):
    small = world.settings(COMMCARE_CASE_PAGE_SIZE=10)
    assert materialize(small, world.db, RunRequest(world.mine)).phase == "Succeeded"
    raw = TenantNames.for_domain(world.mine, small.role_prefix).raw_schema
    last = [r[0] for r in conn.execute(
        sql.SQL("SELECT case_id FROM {} ORDER BY indexed_on DESC, case_id DESC LIMIT 3").format(sql.Identifier(raw, "cases"))
    )]
    # deleted once two pages were served: counted by the first page of the next full pass, never returned
    world.sim.mutate(world.mine, delete_case_ids=last, visible_after=2)
    status = materialize(small, world.db, RunRequest(world.mine, full=True))
    assert status.phase == "Succeeded", status.error
    expected = {"cases": "cases: server 200, stored 197 (3 missing)"}
    async with http_client(http_gateway.url, world.key()) as client:
        schema = envelope(await client.call_tool("get_schema_status", {"tenant": world.mine}))["data"]
        assert schema["incomplete"] == expected
        tables = envelope(await client.call_tool("list_tables", {"tenant": world.mine}))["data"]
        assert tables["incomplete"] == expected
        run = envelope(await client.call_tool("get_materialization_status", {"run_id": status.run_id}))["data"]
        assert run["incomplete"] == expected
        assert run["phases"]["load"]["cases"]["counts"] == {"server": 200, "received": 197, "stored": 197, "missing": 3}
        assert run["phases"]["load"]["forms"]["counts"]["missing"] == 0
