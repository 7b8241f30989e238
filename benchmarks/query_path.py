"""The query path under load: the gateway's `query` tool over streamable HTTP against the same
statements sent straight through psycopg as the tenant's reader. Used by benchmarks/run.py.

- `start_gateway(env)`: `data-explorer serve --transport http` in a child process, as deployed,
  with the environment the tenant was materialized with; it knows the tenant's reader login.
- `run_mcp(...)`: N concurrent clients, each the official MCP client (`mcp.Client` over
  `streamable_http_client`, its own HTTP connection, `ApiKey` authorization verified by the
  gateway against the simulator), calling `query` in a loop for a fixed time.
- `run_direct(...)`: N concurrent psycopg connections logged in with the privileges of the
  tenant's reader (a member of it: the reader login itself allows fewer connections),
  `search_path` the tenant's schema, read-only; the same statements in the same order,
  unprepared as the gateway sends them, each result fetched whole.

Both warm up first (each client runs every statement once, untimed), then all start together.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from simulator_process import free_port

ROOT = Path(__file__).resolve().parent.parent

STATEMENTS: dict[str, str] = {
    "count_by_case_type": (
        "SELECT case_type, count(*) AS cases, count(*) FILTER (WHERE closed) AS closed "
        "FROM cases GROUP BY case_type ORDER BY case_type"
    ),
    "window_latest_per_owner": (
        "SELECT owner_id, case_id, case_type, last_modified, n FROM ("
        "SELECT owner_id, case_id, case_type, last_modified, "
        "row_number() OVER (PARTITION BY owner_id ORDER BY last_modified DESC, case_id) AS n FROM cases"
        ") ranked WHERE n <= 2 ORDER BY owner_id, n"
    ),
    "join_forms_to_cases": (
        "SELECT c.case_type, a.action, count(*) AS actions, count(DISTINCT f.user_id) AS submitters "
        "FROM forms f JOIN form_case_actions a ON a.form_id = f.form_id JOIN cases c ON c.case_id = a.case_id "
        "WHERE f.received_on >= (SELECT max(received_on) FROM forms) - interval '7 days' "
        "GROUP BY c.case_type, a.action ORDER BY c.case_type, a.action"
    ),
    "limit_100": (
        "SELECT case_id, case_type, case_name, owner_id, date_opened, closed "
        "FROM cases ORDER BY last_modified DESC LIMIT 100"
    ),
}


# --- the gateway in a child process -------------------------------------------------------------------


@dataclass
class Gateway:
    process: subprocess.Popen
    url: str
    schema: str
    direct_conninfo: str  # a login with the privileges of the tenant's reader

    def rss_mb(self) -> float | None:
        """The gateway's peak RSS so far (VmHWM)."""
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None


def _direct_login(env: dict[str, str], domain: str) -> tuple[str, str]:
    """(schema, conninfo) of a login with exactly the privileges of the tenant's reader.

    The reader itself (found as the gateway finds it) allows few connections and the gateway's
    pool holds some of them, so the direct side logs in as a role of its own that inherits the
    reader's privileges: `<prefix>_<domain>_direct`, a member of the reader and of nothing else,
    dropped with the tenant's roles."""
    import secrets

    from psycopg import sql

    from data_explorer.config import load_settings
    from data_explorer.warehouse.secrets import SecretBox
    from data_explorer.warehouse.tenant_login import reader_conninfo, reader_login

    settings = load_settings(env)
    dsn = env["DATABASE_URL"]
    role = f"{env['DATA_EXPLORER_ROLE_PREFIX']}_{domain}_direct"
    password = secrets.token_urlsafe(18)
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = reader_login(conn, settings.control_schema, domain, SecretBox.from_settings(settings))
        if found is None:
            raise RuntimeError(f"{domain!r} has no reader login: materialize it first")
        schema, reader, _ = found
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN INHERIT PASSWORD {} IN ROLE {}").format(
            sql.Identifier(role), sql.Literal(password), sql.Identifier(reader)))
    return schema, reader_conninfo(dsn, role, password)


@contextlib.contextmanager
def start_gateway(env: dict[str, str], domain: str = "bench") -> Iterator[Gateway]:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="de-gateway-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "data_explorer.cli", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {Path(log.name).read_text()[-2000:]}")
            try:
                httpx.get(url, timeout=2)  # any answer (401 without a credential) means it serves
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not start in 60 s") from None
                time.sleep(0.1)
        schema, conninfo = _direct_login(env, domain)
        yield Gateway(process, url, schema, conninfo)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)


# --- the load ------------------------------------------------------------------------------------------


def _stats(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0}
    if len(latencies) == 1:
        return {"p50_ms": latencies[0] * 1000, "p99_ms": latencies[0] * 1000, "mean_ms": latencies[0] * 1000}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000, "mean_ms": statistics.fmean(latencies) * 1000}


async def _drive(clients: int, seconds: float,
                 open_client: Callable[[], Any], call: Callable[[Any, str], Awaitable[str | None]]) -> dict:
    """`clients` tasks: open, warm up on every statement, wait for all, then call in turn for `seconds`.
    `call` returns None on success or a short description of the error."""
    names = list(STATEMENTS)
    per_statement: dict[str, list[float]] = {n: [] for n in names}
    errors: list[str] = []
    ready, go = asyncio.Barrier(clients + 1), asyncio.Event()
    window: dict[str, float] = {}

    async def client_task(index: int) -> None:
        arrived = False
        try:
            async with open_client() as client:
                for name in names:
                    problem = await call(client, STATEMENTS[name])
                    if problem:
                        errors.append(f"warm-up {name}: {problem}")
                await ready.wait()
                arrived = True
                await go.wait()
                turn = index
                while time.perf_counter() < window["end"]:
                    name = names[turn % len(names)]
                    turn += 1
                    started = time.perf_counter()
                    try:
                        problem = await call(client, STATEMENTS[name])
                    except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                        problem = f"{type(exc).__name__}: {exc}"
                    if problem:
                        errors.append(f"{name}: {problem}")
                    else:
                        per_statement[name].append(time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"client {index}: {type(exc).__name__}: {exc}")
        finally:
            if not arrived:
                await ready.wait()

    tasks = [asyncio.create_task(client_task(i)) for i in range(clients)]
    await ready.wait()
    window["start"] = time.perf_counter()
    window["end"] = window["start"] + seconds
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - window["start"]
    latencies = [x for values in per_statement.values() for x in values]
    return {
        "requests": len(latencies) + len([e for e in errors if not e.startswith(("warm-up", "client "))]),
        "errors": len(errors), "error_samples": sorted(set(errors))[:5], "seconds": elapsed,
        **_stats(latencies),
        "statements": {n: {"requests": len(v), **_stats(v)} for n, v in per_statement.items()},
    }


async def run_mcp(url: str, authorization: str, tenant: str, clients: int, seconds: float) -> dict:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    @contextlib.asynccontextmanager
    async def open_client():
        async with httpx2.AsyncClient(headers={"Authorization": authorization}, timeout=httpx2.Timeout(30, read=300)) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                yield client

    async def call(client, statement: str) -> str | None:
        result = await client.call_tool("query", {"sql": statement, "tenant": tenant})
        envelope = result.structured_content or {}
        if result.is_error or not envelope.get("success"):
            error = envelope.get("error") or {}
            return f"{error.get('code')}: {str(error.get('message'))[:200]}"
        if envelope["data"].get("truncated"):
            return "truncated"
        return None

    return await _drive(clients, seconds, open_client, call)


async def run_direct(conninfo: str, schema: str, clients: int, seconds: float) -> dict:
    params = conninfo_to_dict(conninfo)
    params["options"] = f"-c search_path={schema} -c default_transaction_read_only=on"
    target = make_conninfo(**params)

    @contextlib.asynccontextmanager
    async def open_client():
        conn = await psycopg.AsyncConnection.connect(target, autocommit=True, prepare_threshold=None)
        async with conn:
            yield conn

    async def call(conn, statement: str) -> str | None:
        try:
            cursor = await conn.execute(statement)
            await cursor.fetchall()
        except psycopg.Error as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return None

    return await _drive(clients, seconds, open_client, call)
