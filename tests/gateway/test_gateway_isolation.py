"""Two users, three project spaces, every tool: nobody reaches a tenant that is not theirs, nothing
happens without a verified caller, and no secret shows up anywhere."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from gateway_helpers import envelope, http_client

from data_explorer.mcp_gateway.definitions import TOOLS
from data_explorer.simulator import DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TENANT_TOOLS = {
    "get_schema_status": {},
    "run_materialization": {"wait": False},
    "list_tables": {},
    "describe_table": {"table": "cases"},
    "get_metadata": {},
    "query": {"sql": "select count(*) from cases"},
    "teardown_schema": {"confirm": False},
}


async def test_unauthenticated_requests_are_refused_with_www_authenticate(world, http_gateway):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    for authorization in (None, "Bearer not-a-token", f"ApiKey {DEMO_USER}:wrong", f"ApiKey {OTHER_USER}:{DEMO_API_KEY}"):
        sent = dict(headers, **({"Authorization": authorization} if authorization else {}))
        response = httpx.post(http_gateway.url, json=body, headers=sent)
        assert response.status_code == 401, (authorization, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert DEMO_API_KEY not in response.text


async def test_cross_tenant_matrix_has_no_leaks(world, http_gateway, conn):
    users = {DEMO_USER: {world.mine}, OTHER_USER: {world.theirs, world.third}}
    domains = (world.mine, world.theirs, world.third)
    runs: dict[str, str] = {}
    for user, own in users.items():  # every tenant gets data, by its own member
        async with http_client(http_gateway.url, world.key(user)) as client:
            for domain in sorted(own):
                run = envelope(await client.call_tool("run_materialization", {"tenant": domain}))
                assert run["data"]["phase"] == "Succeeded", run
                runs[domain] = run["data"]["run_id"]
    counts = {d: world.sim.state()["domains"][d]["cases"] for d in domains}
    for user, own in users.items():
        async with http_client(http_gateway.url, world.key(user)) as client:
            listed = envelope(await client.call_tool("list_tenants", {}))
            assert {t["tenant_id"] for t in listed["data"]["tenants"]} == own
            for domain in domains:
                for tool, args in TENANT_TOOLS.items():
                    result = envelope(await client.call_tool(tool, {**args, "tenant": domain}))
                    if domain in own:
                        if tool == "run_materialization":
                            assert result["success"] or result["error"]["code"] == "CONFLICT"
                        elif tool == "teardown_schema":
                            assert result["error"]["code"] == "VALIDATION_ERROR"  # confirm=false
                        else:
                            assert result["success"], (user, domain, tool, result)
                        if tool == "query":
                            assert result["data"]["rows"] == [[counts[domain]]]
                    else:
                        assert result["success"] is False and result["error"]["code"] == "FORBIDDEN", (user, domain, tool)
                        assert result["data"] is None
                for tool in ("get_materialization_status", "cancel_materialization"):
                    result = envelope(await client.call_tool(tool, {"run_id": runs[domain]}))
                    if domain in own:
                        assert result["success"], result
                    else:
                        assert result["error"]["code"] == "NOT_FOUND", (user, domain, tool)
            # a tenant argument is needed when the caller has several, and is never guessed
            if len(own) > 1:
                ambiguous = envelope(await client.call_tool("list_tables", {}))
                assert ambiguous["error"]["code"] == "VALIDATION_ERROR"
            hostile = envelope(await client.call_tool("query", {
                "tenant": sorted(own)[0], "sql": f"select count(*) from {world.mine.replace('-', '_') if user != DEMO_USER else world.theirs.replace('-', '_')}.cases"}))
            assert hostile["success"] is False
    audited = conn.execute("SELECT count(*) FROM data_explorer.audit_log WHERE tenant = ANY(%s)", (list(domains),)).fetchone()[0]
    assert audited >= len(users) * len(domains) * len(TENANT_TOOLS)


async def test_every_call_leaves_one_audit_row(world, http_gateway, conn):
    before = conn.execute("SELECT coalesce(max(id), 0) FROM data_explorer.audit_log").fetchone()[0]
    calls = [("list_tenants", {}), ("list_pipelines", {}), ("get_schema_status", {}), ("list_tables", {}),
             ("query", {"sql": "select 1"}), ("query", {"sql": 5}), ("nope", {})]
    async with http_client(http_gateway.url, world.key()) as client:
        for tool, args in calls:
            envelope(await client.call_tool(tool, args))
    rows = conn.execute(
        "SELECT tool, principal, status, error_code, transport FROM data_explorer.audit_log WHERE id > %s ORDER BY id", (before,)
    ).fetchall()
    assert [r[0] for r in rows] == [c[0] for c in calls]
    assert all(r[1] == DEMO_USER and r[4] == "http" for r in rows)
    assert [r[3] for r in rows] == [None, None, None, "NO_DATA", "NO_DATA", "VALIDATION_ERROR", "NOT_FOUND"]


async def test_no_secret_appears_in_responses_logs_runs_or_audit(world, http_gateway, conn, caplog, home):
    caplog.set_level(logging.DEBUG)
    token = httpx.post(
        f"{world.sim.base_url}/oauth/token/",
        data={"grant_type": "password", "username": DEMO_USER, "password": DEMO_API_KEY, "client_id": "x"},
    ).json()["access_token"]
    texts = []
    for authorization in (world.key(), f"Bearer {token}"):
        async with http_client(http_gateway.url, authorization) as client:
            for tool in TOOLS:
                args = {"get_materialization_status": {"run_id": "00000000-0000-0000-0000-000000000000"},
                        "cancel_materialization": {"run_id": "00000000-0000-0000-0000-000000000000"},
                        "describe_table": {"table": "cases"}, "query": {"sql": "select * from cases"},
                        "teardown_schema": {"confirm": False}}.get(tool.name, {})
                result = await client.call_tool(tool.name, args)
                texts.append(result.content[0].text)
    # a run in progress: its process's environment and command line
    world.sim.set_faults({"rules": [{"kind": "slow", "rate": 1.0, "scope": "cases"}], "slow_delay": 3})
    async with http_client(http_gateway.url, world.key()) as client:
        run = envelope(await client.call_tool("run_materialization", {"wait": False, "full": True}))
        pid = conn.execute("SELECT pid FROM data_explorer.runs WHERE run_id = %s", (run["data"]["run_id"],)).fetchone()[0]
        with open(f"/proc/{pid}/environ", "rb") as env, open(f"/proc/{pid}/cmdline", "rb") as cmd:
            process_text = (env.read() + b" " + cmd.read()).decode(errors="replace")
        envelope(await client.call_tool("cancel_materialization", {"run_id": run["data"]["run_id"]}))
    world.sim.set_faults({})
    secrets = [DEMO_API_KEY, OTHER_API_KEY, token]
    sources = {
        "responses": "\n".join(texts),
        "logs": caplog.text,
        "runs": json.dumps(conn.execute("SELECT * FROM data_explorer.runs").fetchall(), default=str),
        "audit": json.dumps(conn.execute("SELECT * FROM data_explorer.audit_log").fetchall(), default=str),
        "credentials": json.dumps(conn.execute("SELECT * FROM data_explorer.run_credentials").fetchall(), default=str),
        "a runner's environment and command line": process_text,
        "run logs": "\n".join(p.read_text() for p in (home / "runs").glob("*.log")) if (home / "runs").exists() else "",
    }
    for where, text in sources.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the {where}"


async def test_the_gateway_writes_audit_rows_as_a_role_that_cannot_change_them(world, http_gateway):
    import psycopg

    async with http_client(http_gateway.url, world.key()) as client:
        envelope(await client.call_tool("list_tenants", {}))
    with psycopg.connect(http_gateway.gateway._audit.conninfo, autocommit=True) as audit:
        assert audit.execute("SELECT count(*) FROM data_explorer.audit_log").fetchone()[0] > 0
        for statement in ("UPDATE data_explorer.audit_log SET tool = 'x'", "DELETE FROM data_explorer.audit_log",
                          "TRUNCATE data_explorer.audit_log", "ALTER TABLE data_explorer.audit_log DISABLE TRIGGER ALL",
                          "SELECT * FROM data_explorer.runs"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                audit.execute(statement)
