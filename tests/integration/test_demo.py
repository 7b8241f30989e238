"""The quickstart's demo, as a new user runs it: embedded PostgreSQL, simulator, two runs, queries."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import pytest


@pytest.mark.embedded
@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_embedded_database(embedded_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMCARE_", "DATABASE_URL", "DATA_EXPLORER_"))}
    env["DATA_EXPLORER_HOME"] = str(embedded_home)
    result = subprocess.run(
        [sys.executable, "-m", "data_explorer.cli", "demo", "--cases", "300", "--no-serve"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "PostgreSQL: embedded" in out
    assert out.count("Succeeded in") == 2
    second = out.split("2. Ten cases change")[1]
    assert re.search(r"load cases\s+10 rows\s+incremental", second)
    assert "case_types" in out and "case_patient" in out and "form_submissions" in out
    pgdata = embedded_home / "postgres"
    assert (pgdata / "PG_VERSION").exists() and not (pgdata / "postmaster.pid").exists()
    # the data directory, the server's files, logs, dbt's work files: the user's alone (as root, the server's
    # own user may traverse the data directory, no more)
    loose = [f"{p} {p.lstat().st_mode & 0o777:o}" for p in embedded_home.rglob("*")
             if not p.is_symlink() and not stat.S_ISSOCK(p.lstat().st_mode) and p.lstat().st_mode & 0o077]
    assert embedded_home.stat().st_mode & 0o777 == (0o711 if os.geteuid() == 0 else 0o700) and not loose, loose[:10]


@pytest.mark.embedded
@pytest.mark.slow
def test_demo_ends_serving_mcp_to_agents(embedded_home):
    import signal
    import socket

    import anyio

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMCARE_", "DATABASE_URL", "DATA_EXPLORER_"))}
    env["DATA_EXPLORER_HOME"] = str(embedded_home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "data_explorer.cli", "demo", "--cases", "100", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        for line in proc.stdout:
            if "The MCP gateway serves" in line:
                break
        else:
            raise AssertionError("the demo never started serving")

        async def use():
            import httpx2
            from mcp import Client
            from mcp.client.streamable_http import streamable_http_client

            headers = {"Authorization": "Bearer ApiKey demo@example.org:demo-api-key"}
            for _ in range(50):  # the server may take a moment after the announcement
                try:
                    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
                        async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
                            tenants = (await client.call_tool("list_tenants", {})).structured_content
                            count = (await client.call_tool("query", {"sql": "select count(*) from cases"})).structured_content
                            return tenants, count
                except Exception:
                    await anyio.sleep(0.2)
            raise AssertionError("could not reach the demo's gateway")

        tenants, count = anyio.run(use)
        assert tenants["data"]["tenants"][0]["tenant_id"] == "demo" and tenants["data"]["tenants"][0]["has_data"]
        assert count["data"]["rows"] == [[100]]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    pgdata = embedded_home / "postgres"
    assert not (pgdata / "postmaster.pid").exists(), "the embedded server should stop with the demo"
