"""A project space user_domains leaves out (its plan lacks CommCare's integration privilege), through the
official MCP client over HTTP: its member uses it by naming it, after one request to CommCare per caller
and tenant; anyone else gets the same refusal as for any other tenant; list_tenants says how to name it."""

from __future__ import annotations

import dataclasses
import secrets

import httpx
import pytest
from gateway_helpers import World, envelope, http_client, stdio_client

from data_explorer.simulator import DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER, RunningSimulator, WebUser, demo_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def world(make_settings, db) -> World:
    """demo@ belongs to `mine` (listed) and `third` (left out of user_domains); other@ to `theirs`."""
    tag = secrets.token_hex(3)
    mine, theirs, hidden = f"u-{tag}-a", f"u-{tag}-b", f"u-{tag}-c"
    config = demo_config(cases=120, users=4, domains=(mine, theirs, hidden))
    config = dataclasses.replace(
        config,
        domains=config.domains[:2] + (dataclasses.replace(config.domains[2], integration_privilege=False),),
        users=(WebUser(DEMO_USER, DEMO_API_KEY, (mine, hidden)), WebUser(OTHER_USER, OTHER_API_KEY, (theirs,))),
    )
    with RunningSimulator(config) as sim:
        yield World(sim, (mine, theirs, hidden), make_settings, db)


async def test_a_member_uses_an_unlisted_tenant_after_one_check_and_others_are_refused(world, http_gateway):
    hidden = world.third
    authenticator = http_gateway.gateway.authenticator
    async with http_client(http_gateway.url, world.key(DEMO_USER)) as client:
        listed = envelope(await client.call_tool("list_tenants", {}))["data"]
        assert [t["tenant_id"] for t in listed["tenants"]] == [world.mine]
        assert "tenant=" in listed["unlisted"] and "/a/<name>/" in listed["unlisted"]
        status = envelope(await client.call_tool("get_schema_status", {"tenant": hidden}))
        assert status["success"] and status["tenant_id"] == hidden and status["data"]["has_data"] is False
        assert authenticator.membership_checks == 1
        run = envelope(await client.call_tool("run_materialization", {"tenant": hidden}))
        assert run["data"]["phase"] == "Succeeded", run
        counted = envelope(await client.call_tool("query", {"tenant": hidden, "sql": "select count(*) from cases"}))
        assert counted["data"]["rows"] == [[world.sim.state()["domains"][hidden]["cases"]]]
        followed = envelope(await client.call_tool("get_materialization_status", {"run_id": run["data"]["run_id"]}))
        assert followed["success"] and followed["tenant_id"] == hidden
        default = envelope(await client.call_tool("get_schema_status", {}))  # the one listed tenant, never a guess
        assert default["success"] and default["tenant_id"] == world.mine
    assert authenticator.membership_checks == 1  # one request for demo@ and the tenant within the cache time

    async with http_client(http_gateway.url, world.key(OTHER_USER)) as client:
        for _ in range(2):
            refused = envelope(await client.call_tool("query", {"tenant": hidden, "sql": "select 1"}))
            assert refused["error"] == {
                "code": "FORBIDDEN", "detail": {},
                "message": f"tenant {hidden!r} is not one of your CommCare project spaces ({world.theirs})",
            }
            assert refused["data"] is None and refused["tenant_id"] is None
        hidden_run = envelope(await client.call_tool("get_materialization_status", {"run_id": run["data"]["run_id"]}))
        assert hidden_run["error"]["code"] == "NOT_FOUND" and hidden not in hidden_run["error"]["message"]
        for name in ("../" + hidden, hidden + "/x", "x" * 90):
            assert envelope(await client.call_tool("get_schema_status", {"tenant": name}))["error"]["code"] in (
                "FORBIDDEN", "VALIDATION_ERROR")
    assert authenticator.membership_checks == 2  # other@'s one check; no request for impossible names


async def test_unauthenticated_callers_cause_no_membership_check(world, http_gateway):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "get_schema_status", "arguments": {"tenant": world.third}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    for authorization in (None, "Bearer not-a-token", f"ApiKey {DEMO_USER}:wrong"):
        sent = dict(headers, **({"Authorization": authorization} if authorization else {}))
        assert httpx.post(http_gateway.url, json=body, headers=sent).status_code == 401
    assert http_gateway.gateway.authenticator.membership_checks == 0
    assert "cases" not in world.sim.stats()["requests"]


async def test_over_stdio_the_started_user_names_an_unlisted_tenant_too(world, home):
    async with stdio_client(world, home) as client:
        listed = envelope(await client.call_tool("list_tenants", {}))["data"]
        assert [t["tenant_id"] for t in listed["tenants"]] == [world.mine]
        status = envelope(await client.call_tool("get_schema_status", {"tenant": world.third}))
        assert status["success"] and status["tenant_id"] == world.third
        refused = envelope(await client.call_tool("get_schema_status", {"tenant": world.theirs}))
        assert refused["error"]["code"] == "FORBIDDEN"
    assert world.sim.stats()["requests"]["cases"] == {"200": 1, "403": 1}
