"""The MCP gateway with the Kubernetes control plane: the same tools, with runs carried out
as MaterializationRuns by the operator's Jobs (the runner played as a kubelet would run it)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from data_explorer.simulator import DEMO_API_KEY, DEMO_USER, RunningSimulator, demo_config

from .conftest import JOBS, MATERIALIZATION_RUNS, SECRETS
from .kubelet import run_job, seed_runnable_tenant, write_kubeconfig
from .operator_helpers import new_domain

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _envelope(result) -> dict:
    data = result.structured_content
    assert data is not None and json.loads(result.content[0].text) == data
    assert result.is_error == (not data["success"])
    return data


async def _the_only_job(cluster, exclude=(), timeout=20.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        jobs = [j for j in await cluster.list(JOBS) if j["metadata"]["name"] not in exclude]
        if jobs:
            assert len(jobs) == 1, jobs
            return jobs[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no Job was created")


async def test_the_tools_run_poll_cancel_and_query_through_materialization_runs(cluster, operator, operator_settings, tmp_path):
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    domain = new_domain()
    sim = RunningSimulator(demo_config(cases=150, forms=80, users=5, domains=(domain,)))
    sim.start()
    try:
        operator.ctx.runner = type(operator.ctx.runner)(**{**operator.ctx.runner.__dict__, "proxy_url": None})
        await seed_runnable_tenant(cluster, operator_settings, domain, sim.base_url)

        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(cluster.kmock.url).rstrip("/"))
        env = {k: str(v) for k, v in operator_settings.values.items() if v is not None and not isinstance(v, (tuple, dict))}
        env.update({
            "COMMCARE_BASE_URL": sim.base_url, "COMMCARE_USERNAME": DEMO_USER, "COMMCARE_API_KEY": DEMO_API_KEY,
            "DATA_EXPLORER_CONTROL_PLANE": "kubernetes", "DATA_EXPLORER_NAMESPACE": "tenants",
            "KUBECONFIG": str(kubeconfig), "DATA_EXPLORER_HOME": str(tmp_path / "gateway"),
        })
        env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}, **env}
        params = StdioServerParameters(command=sys.executable, args=["-m", "data_explorer.cli", "serve", "--transport", "stdio"], env=env)
        async with Client(params) as client:
            tenants = _envelope(await client.call_tool("list_tenants", {}))
            assert domain in [t["tenant_id"] for t in tenants["data"]["tenants"]], tenants

            progress: list[tuple[float, str]] = []

            async def on_progress(value, total, message):
                progress.append((value, message))

            waiting = asyncio.create_task(client.call_tool(
                "run_materialization", {"tenant": domain, "full": True}, progress_callback=on_progress))
            job = await _the_only_job(cluster)
            busy = _envelope(await client.call_tool("run_materialization", {"tenant": domain, "wait": False}))
            assert busy["error"]["code"] == "CONFLICT"
            done = await asyncio.to_thread(run_job, cluster.api, job, kubeconfig=kubeconfig, home=tmp_path / "pod")
            assert done.returncode == 0, done.stdout + done.stderr
            await cluster.patch(JOBS, job["metadata"]["name"], {"status": {"conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}, status=True)
            result = _envelope(await asyncio.wait_for(waiting, 60))
            assert result["success"] and result["data"]["phase"] == "Succeeded", result
            values = [v for v, _ in progress]
            assert values and values == sorted(values) and len(set(values)) == len(values), progress
            assert all(message for _, message in progress)

            run_id = result["data"]["run_id"]
            status = _envelope(await client.call_tool("get_materialization_status", {"run_id": run_id, "verbose": True}))
            load = status["data"]["phases"]["load"]
            expected = sim.state()["domains"][domain]
            assert load["cases"]["rows"] == expected["cases"] and load["forms"]["rows"] == expected["forms"]
            counted = _envelope(await client.call_tool("query", {"tenant": domain, "sql": "SELECT count(*) AS n FROM cases"}))
            assert counted["data"]["rows"][0][0] == expected["cases"], counted
            tables = _envelope(await client.call_tool("list_tables", {"tenant": domain}))
            assert any(t["name"] == "cases" and t["row_count"] == expected["cases"] for t in tables["data"]["tables"]), tables

            started = _envelope(await client.call_tool("run_materialization", {"tenant": domain, "wait": False}))
            second = started["data"]["run_id"]
            job2 = await _the_only_job(cluster, exclude={job["metadata"]["name"]})
            cancelled = _envelope(await client.call_tool("cancel_materialization", {"run_id": second}))
            assert cancelled["data"]["phase"] == "Cancelled", cancelled
            assert await cluster.get(JOBS, job2["metadata"]["name"]) is None
            runs = {r["metadata"]["labels"]["dataexplorer.io/run-id"]: r for r in await cluster.list(MATERIALIZATION_RUNS)}
            assert set(runs) == {run_id, second} and runs[second]["spec"]["cancel"] is True
            # the caller's credential travelled in a per-run Secret, gone with the run's end
            leftover = [s["metadata"]["name"] for s in await cluster.list(SECRETS) if "pass-through" in s["metadata"]["name"]
                        or s["metadata"]["name"].endswith("-credentials")]
            assert leftover == [], leftover
            again = _envelope(await client.call_tool("get_materialization_status", {"run_id": second}))
            assert again["data"]["phase"] == "Cancelled"
    finally:
        sim.stop()
