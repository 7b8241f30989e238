"""Runs through the gateway: wait=false and polling, one run at a time, real cancellation, and a
client that goes away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import anyio
import pytest
from gateway_helpers import envelope, http_client

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SLOW_CASES = {"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 0.4}


async def _poll(client, run_id, until, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = envelope(await client.call_tool("get_materialization_status", {"run_id": run_id}))
        assert status["success"], status
        if until(status["data"]):
            return status["data"]
        await anyio.sleep(0.2)
    raise AssertionError(f"run {run_id} never reached the expected state")


def _published(conn, schema):
    from data_explorer.warehouse.catalog import relation_counts

    return relation_counts(conn, schema)


async def test_wait_false_returns_at_once_and_status_follows_phase_by_phase(world, http_gateway):
    world.sim.set_faults(SLOW_CASES)
    async with http_client(http_gateway.url, world.key()) as client:
        started = time.monotonic()
        run = envelope(await client.call_tool("run_materialization", {"wait": False}))
        assert time.monotonic() - started < 5
        assert run["success"] and run["data"]["phase"] in ("Pending", "Discovering", "Loading")
        run_id = run["data"]["run_id"]
        seen = set()

        def record(data):
            seen.add(data["phase"])
            return data["phase"] == "Loading"

        await _poll(client, run_id, record)
        again = envelope(await client.call_tool("run_materialization", {"wait": False}))
        assert again["error"]["code"] == "CONFLICT" and again["error"]["detail"]["run_id"] == run_id
        world.sim.set_faults({})
        final = await _poll(client, run_id, lambda d: d["phase"] in ("Succeeded", "Failed", "Cancelled"))
        assert final["phase"] == "Succeeded", final
        assert final["phases"]["load"]["cases"]["rows"] > 0 and final["phases"]["transform"]["models_built"] >= 7
        transform = final["phases"]["transform"]
        assert transform["mode"] in ("full", "incremental") and ("reason" in transform) == (transform["mode"] == "full")
        verbose = envelope(await client.call_tool("get_materialization_status", {"run_id": run_id, "verbose": True}))
        assert "models" in verbose["data"]["phases"]["transform"]


@pytest.mark.parametrize("when", ["load", "transform"])
async def test_cancel_stops_the_work_and_keeps_the_published_data(world, http_gateway, conn, when):
    schema = world.mine.replace("-", "_")
    async with http_client(http_gateway.url, world.key()) as client:
        assert envelope(await client.call_tool("run_materialization", {}))["data"]["phase"] == "Succeeded"
        before = _published(conn, schema)
        world.sim.mutate(world.mine, update_cases=20, new_cases=10)
        if when == "load":
            world.sim.set_faults(SLOW_CASES)
        run = envelope(await client.call_tool("run_materialization", {"wait": False, "full": True}))
        run_id = run["data"]["run_id"]
        target = "Loading" if when == "load" else "Transforming"
        await _poll(client, run_id, lambda d: d["phase"] == target, timeout=120)
        pid = conn.execute("SELECT pid FROM data_explorer.runs WHERE run_id = %s", (run_id,)).fetchone()[0]
        cancelled = envelope(await client.call_tool("cancel_materialization", {"run_id": run_id}))
        assert cancelled["success"] and cancelled["data"]["phase"] == "Cancelled", cancelled
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the runner process is gone
        assert _published(conn, schema) == before
        assert conn.execute("SELECT count(*) FROM data_explorer.run_credentials WHERE run_id = %s", (run_id,)).fetchone()[0] == 0
        again = envelope(await client.call_tool("cancel_materialization", {"run_id": run_id}))
        assert again["success"] and again["warnings"] and again["data"]["phase"] == "Cancelled"


async def test_an_mcp_cancellation_of_a_waiting_run_stops_it(world, http_gateway, conn):
    """notifications/cancelled exists on sessions (stdio, and HTTP with the session protocol); on the
    single-exchange HTTP protocol a closed stream cannot be told from a client gone away (next test)."""
    world.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 20})
    async with http_client(http_gateway.url, world.key(), mode="legacy") as client:
        progress = []

        async def on_progress(value, total, message):
            progress.append(message)

        with anyio.move_on_after(4) as scope:  # cancels the call: the client sends notifications/cancelled
            await client.call_tool("run_materialization", {"full": True}, progress_callback=on_progress)
        assert scope.cancelled_caught
        run_id = str(conn.execute(
            "SELECT run_id FROM data_explorer.runs WHERE domain = %s ORDER BY created_at DESC LIMIT 1", (world.mine,)
        ).fetchone()[0])
        final = await _poll(client, run_id, lambda d: d["phase"] in ("Succeeded", "Failed", "Cancelled"), timeout=60)
        assert final["phase"] == "Cancelled", final
        assert progress


async def test_a_client_that_goes_away_leaves_the_run_going(world, http_gateway, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(f"""
        import anyio, httpx2, sys
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        async def main():
            headers = {{"Authorization": {world.key()!r}}}
            async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
                async with Client(streamable_http_client({http_gateway.url!r}, http_client=http)) as client:
                    async def progress(value, total, message):
                        print("progress", value, flush=True)
                    await client.call_tool("run_materialization", {{}}, progress_callback=progress)

        anyio.run(main)
    """))
    world.sim.set_faults(SLOW_CASES)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("progress")
    proc.send_signal(signal.SIGKILL)  # no goodbye, no cancellation
    proc.wait()
    world.sim.set_faults({})
    async with http_client(http_gateway.url, world.key()) as client:
        status = envelope(await client.call_tool("get_schema_status", {}))
        run_id = (status["data"]["active_run"] or status["data"]["last_run"])["run_id"]
        final = await _poll(client, run_id, lambda d: d["phase"] in ("Succeeded", "Failed", "Cancelled"))
    assert final["phase"] == "Succeeded", final
