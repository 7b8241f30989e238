"""Every tool through the official MCP client over streamable HTTP, as the demo user."""

from __future__ import annotations

import pytest

from data_explorer.mcp_gateway.definitions import TOOLS
from data_explorer.simulator import DEMO_USER

from gateway_helpers import envelope, http_client

pytestmark = pytest.mark.anyio


async def test_tools_are_declared_once_with_schemas_and_hints(world, http_gateway):
    async with http_client(http_gateway.url, world.key()) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert set(listed) == {spec.name for spec in TOOLS}
    for spec in TOOLS:
        tool = listed[spec.name]
        assert tool.output_schema and "success" in tool.output_schema["properties"]
        assert tool.description.startswith(spec.description.split("\n")[0])
        assert tool.annotations.read_only_hint is spec.read_only
        assert tool.annotations.destructive_hint is spec.destructive
    assert listed["teardown_schema"].annotations.destructive_hint
    assert listed["query"].annotations.read_only_hint


async def test_before_any_data_the_tools_say_so_and_point_to_run_materialization(world, http_gateway):
    async with http_client(http_gateway.url, world.key()) as client:
        status = envelope(await client.call_tool("get_schema_status", {}))
        assert status["success"] and status["tenant_id"] == world.mine
        assert status["data"]["has_data"] is False and "run_materialization" in status["data"]["next_step"]
        for tool in ("list_tables", "get_metadata", "query"):
            args = {"sql": "select 1"} if tool == "query" else {}
            result = envelope(await client.call_tool(tool, args))
            assert result["success"] is False and result["error"]["code"] == "NO_DATA"
            assert "run_materialization" in result["error"]["message"]
        described = envelope(await client.call_tool("describe_table", {"table": "cases"}))
        assert described["error"]["code"] == "NO_DATA"


async def test_a_materialized_tenant_can_be_explored(world, http_gateway, conn):
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    world.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0}], "slow_delay": 0.6})  # steps long enough to see
    async with http_client(http_gateway.url, world.key()) as client:
        run = envelope(await client.call_tool("run_materialization", {}, progress_callback=on_progress))
        world.sim.set_faults({})
        assert run["success"], run
        assert run["data"]["phase"] == "Succeeded" and run["tenant_id"] == world.mine
        assert run["data"]["phases"]["load"]["cases"]["rows"] == world.sim.state()["domains"][world.mine]["cases"]
        values = [p[0] for p in progress]
        assert len(values) >= 5 and values == sorted(values) and len(set(values)) == len(values)
        assert all(p[1] == 100 and p[2] for p in progress)
        messages = " | ".join(p[2] for p in progress)
        assert "loading cases" in messages and "loading forms" in messages and "published" in messages
        assert values[-1] == 100

        tables = envelope(await client.call_tool("list_tables", {}))
        assert tables["success"] and tables["schema"] == world.mine.replace("-", "_")
        by_name = {t["name"]: t for t in tables["data"]["tables"]}
        assert {"cases", "forms", "users", "case_types", "form_submissions"} <= set(by_name)
        assert by_name["cases"]["row_count"] == world.sim.state()["domains"][world.mine]["cases"]
        assert all(t["description"] for t in by_name.values())
        assert tables["data"]["materialized_at"] and by_name["cases"]["columns"] is None
        verbose = envelope(await client.call_tool("list_tables", {"verbose": True}))
        assert verbose["data"]["tables"][0]["columns"]

        patient = envelope(await client.call_tool("describe_table", {"table": "case_patient"}))
        columns = {c["name"]: c for c in patient["data"]["columns"]}
        assert columns["case_id"]["source"] == "pipeline" or columns["case_id"]["source"] == "database"
        labelled = [c for c in columns.values() if c["source"] == "app"]
        assert labelled and all(c["label"] or c["description"] for c in labelled)
        assert any(r["to"] == "cases.case_id" for r in patient["data"]["relationships"])
        cases = envelope(await client.call_tool("describe_table", {"table": "cases"}))
        assert {c["source"] for c in cases["data"]["columns"]} == {"pipeline"}
        missing = envelope(await client.call_tool("describe_table", {"table": "nope"}))
        assert missing["error"]["code"] == "NOT_FOUND" and "case_types" in missing["error"]["message"]

        metadata = envelope(await client.call_tool("get_metadata", {}))
        assert metadata["data"]["relationships"] and len(metadata["data"]["case_types"]) == 3
        assert all(ct["view"] for ct in metadata["data"]["case_types"])
        assert "properties" not in metadata["data"]["case_types"][0]
        verbose = envelope(await client.call_tool("get_metadata", {"verbose": True}))
        assert verbose["data"]["case_types"][0]["properties"] and verbose["data"]["forms"][0]["questions"]

        counted = envelope(await client.call_tool("query", {"sql": "select count(*) as n from cases"}))
        assert counted["data"]["rows"] == [[by_name["cases"]["row_count"]]]
        assert counted["data"]["columns"][0]["name"] == "n"
        capped = envelope(await client.call_tool("query", {"sql": "select case_id from cases", "max_rows": 7}))
        assert capped["data"]["row_count"] == 7 and capped["data"]["truncated"] and capped["warnings"]
        analytic = envelope(await client.call_tool("query", {"sql": (
            "with t as (select case_type, date_opened, row_number() over (partition by case_type order by date_opened) rn"
            " from cases) select case_type, percentile_cont(0.5) within group (order by rn) from t group by 1")}))
        assert analytic["success"], analytic
        refused = envelope(await client.call_tool("query", {"sql": "delete from cases"}))
        assert refused["error"]["code"] == "VALIDATION_ERROR" and refused["error"]["message"]

        pipelines = envelope(await client.call_tool("list_pipelines", {}))
        assert pipelines["data"]["pipelines"][0]["name"] == "commcare_sync"

        tenants = envelope(await client.call_tool("list_tenants", {}))
        assert [t["tenant_id"] for t in tenants["data"]["tenants"]] == [world.mine]
        assert tenants["data"]["tenants"][0]["has_data"]


async def test_teardown_needs_confirm_and_keeps_metadata(world, http_gateway, conn):
    async with http_client(http_gateway.url, world.key()) as client:
        assert envelope(await client.call_tool("run_materialization", {}))["data"]["phase"] == "Succeeded"
        refused = envelope(await client.call_tool("teardown_schema", {}))
        assert refused["error"]["code"] == "VALIDATION_ERROR" and "confirm=true" in refused["error"]["message"]
        done = envelope(await client.call_tool("teardown_schema", {"confirm": True}))
        assert done["success"] and done["data"]["dropped"] and done["data"]["metadata_kept"]
        assert envelope(await client.call_tool("list_tables", {}))["error"]["code"] == "NO_DATA"
    kept = conn.execute("SELECT count(*) FROM data_explorer.tenant_metadata WHERE domain = %s", (world.mine,)).fetchone()[0]
    assert kept == 1


async def test_malformed_arguments_get_a_validation_envelope(world, http_gateway, conn):
    async with http_client(http_gateway.url, world.key()) as client:
        cases = [
            ("query", {"sql": 123}),
            ("query", {"sql": "x" * 200_000}),
            ("query", {}),
            ("query", {"sql": "select 1", "max_rows": -5}),
            ("describe_table", {"table": ["cases"]}),
            ("get_materialization_status", {"run_id": "not-a-run"}),
            ("run_materialization", {"wait": "sometimes"}),
        ]
        for tool, args in cases:
            result = envelope(await client.call_tool(tool, args))
            assert result["success"] is False and result["error"]["code"] == "VALIDATION_ERROR", (tool, result)
            assert "x" * 100 not in result["error"]["message"]  # values are not echoed back
        unknown = envelope(await client.call_tool("drop_everything", {}))
        assert unknown["error"]["code"] == "NOT_FOUND"
        missing_run = envelope(await client.call_tool("get_materialization_status", {"run_id": "00000000-0000-0000-0000-000000000000"}))
        assert missing_run["error"]["code"] == "NOT_FOUND"
        pipeline = envelope(await client.call_tool("run_materialization", {"pipeline": "nope"}))
        assert pipeline["error"]["code"] == "NOT_FOUND"
    rows = conn.execute(
        "SELECT tool, status, error_code FROM data_explorer.audit_log WHERE principal = %s AND tool IN ('query', 'drop_everything')",
        (DEMO_USER,),
    ).fetchall()
    assert ("drop_everything", "error", "NOT_FOUND") in rows
    assert sum(1 for r in rows if r[0] == "query" and r[2] == "VALIDATION_ERROR") >= 4


async def test_a_cancelled_query_call_stops_its_statement_in_postgres(world, http_gateway, conn):
    import time

    import anyio

    async with http_client(http_gateway.url, world.key()) as client:
        assert envelope(await client.call_tool("run_materialization", {}))["data"]["phase"] == "Succeeded"
        reader = conn.execute("SELECT reader_role FROM data_explorer.tenants WHERE domain = %s", (world.mine,)).fetchone()[0]

        def running():
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND state = 'active'", (reader,)
            ).fetchone()[0]

        with anyio.move_on_after(2) as scope:
            # long on CPU alone: one generate_series of billions would spill past the reader's temp_file_limit
            await client.call_tool("query", {"sql": "select count(*) from generate_series(1, 50000) a, generate_series(1, 50000) b"})
        assert scope.cancelled_caught
        deadline = time.monotonic() + 5
        while running() and time.monotonic() < deadline:
            await anyio.sleep(0.1)
        assert running() == 0, "the statement kept running after its call was cancelled"
        again = envelope(await client.call_tool("query", {"sql": "select 1 as ok"}))
        assert again["data"]["rows"] == [[1]]
