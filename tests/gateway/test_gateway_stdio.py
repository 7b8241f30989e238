"""The same gateway over stdio: the caller is the CommCare user it was started as."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import anyio
import pytest
from gateway_helpers import envelope, stdio_client, stdio_parameters

from data_explorer.mcp_gateway.definitions import TOOLS
from data_explorer.simulator import DEMO_USER

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_stdio_serves_every_tool_with_progress(world, home, conn):
    progress = []

    async def on_progress(value, total, message):
        progress.append(value)

    async with stdio_client(world, home) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {t.name for t in TOOLS}
        tenants = envelope(await client.call_tool("list_tenants", {}))
        assert [t["tenant_id"] for t in tenants["data"]["tenants"]] == [world.mine]
        run = envelope(await client.call_tool("run_materialization", {}, progress_callback=on_progress))
        assert run["data"]["phase"] == "Succeeded", run
        assert progress == sorted(progress) and progress[-1] == 100
        rows = envelope(await client.call_tool("query", {"sql": "select count(*) from cases"}))
        assert rows["data"]["rows"][0][0] == world.sim.state()["domains"][world.mine]["cases"]
        forbidden = envelope(await client.call_tool("list_tables", {"tenant": world.theirs}))
        assert forbidden["error"]["code"] == "FORBIDDEN"
        run_id = run["data"]["run_id"]
        calls = {
            "get_schema_status": {}, "list_pipelines": {}, "get_materialization_status": {"run_id": run_id},
            "cancel_materialization": {"run_id": run_id}, "list_tables": {}, "describe_table": {"table": "case_patient"},
            "get_metadata": {}, "teardown_schema": {"confirm": True},
        }
        for tool, args in calls.items():
            result = envelope(await client.call_tool(tool, args))
            assert result["success"], (tool, result)
        assert {"list_tenants", "run_materialization", "query", *calls} == {t.name for t in TOOLS}
        assert envelope(await client.call_tool("list_tables", {}))["error"]["code"] == "NO_DATA"  # torn down
    audit = conn.execute("SELECT DISTINCT principal, transport FROM data_explorer.audit_log WHERE tenant = %s", (world.mine,)).fetchall()
    assert audit == [(DEMO_USER, "stdio")]


@pytest.mark.parametrize("when", ["load", "transform"])
async def test_stdio_cancellation_stops_the_run(world, home, conn, when):
    if when == "load":
        world.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 20})
    async with stdio_client(world, home) as client:
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "run_materialization", {})
            target = "Loading" if when == "load" else "Transforming"
            deadline = time.monotonic() + 60
            while True:  # wait for the phase, then cancel the call: the client sends notifications/cancelled
                row = conn.execute("SELECT phase FROM data_explorer.runs WHERE domain = %s ORDER BY created_at DESC LIMIT 1",
                                   (world.mine,)).fetchone()
                if row and row[0] == target:
                    break
                assert time.monotonic() < deadline, f"never reached {target}"
                await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        run_id = _latest_run(conn, world.mine)
        assert await _phase_becomes(conn, run_id, "Cancelled")


async def test_a_stdio_client_that_dies_leaves_the_run_going(world, home, conn, tmp_path):
    world.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 0.3})
    parameters = stdio_parameters(world, home)
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(f"""
        import anyio
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        async def main():
            params = StdioServerParameters.model_validate_json({parameters.model_dump_json()!r})
            async with Client(params) as client:
                async def progress(value, total, message):
                    print("progress", value, flush=True)
                await client.call_tool("run_materialization", {{}}, progress_callback=progress)

        anyio.run(main)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("progress")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    world.sim.set_faults({})
    assert await _phase_becomes(conn, _latest_run(conn, world.mine), "Succeeded", timeout=120)


def _latest_run(conn, domain):
    return str(conn.execute(
        "SELECT run_id FROM data_explorer.runs WHERE domain = %s ORDER BY created_at DESC LIMIT 1", (domain,)
    ).fetchone()[0])


async def _phase_becomes(conn, run_id, phase, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = conn.execute("SELECT phase FROM data_explorer.runs WHERE run_id = %s", (run_id,)).fetchone()[0]
        if current == phase:
            return True
        if current in ("Succeeded", "Failed", "Cancelled"):
            raise AssertionError(f"run {run_id} ended {current}, not {phase}")
        await anyio.sleep(0.2)
    return False
