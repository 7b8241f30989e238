"""One caller cannot hold the whole gateway: past DATA_EXPLORER_CALLS_PER_CALLER calls in progress, the
next is refused with RATE_LIMITED; other callers are not."""

from __future__ import annotations

import asyncio

import pytest
from gateway_helpers import envelope, http_client

from data_explorer.simulator import OTHER_USER

pytestmark = [pytest.mark.anyio, pytest.mark.security]

SLOW = "select count(*) from generate_series(1, 3000) a, generate_series(1, 3000) b, generate_series(1, 30) c"


async def test_calls_past_the_callers_limit_are_refused_and_others_are_served(world, http_gateway, monkeypatch):
    async with http_client(http_gateway.url, world.key()) as mine, \
            http_client(http_gateway.url, world.key(OTHER_USER)) as theirs:
        assert envelope(await mine.call_tool("run_materialization", {}))["data"]["phase"] == "Succeeded"
        monkeypatch.setitem(http_gateway.gateway.settings.values, "DATA_EXPLORER_CALLS_PER_CALLER", 2)
        slow = [asyncio.create_task(mine.call_tool("query", {"sql": SLOW})) for _ in range(2)]
        await asyncio.sleep(0.5)  # both in progress
        refused = envelope(await mine.call_tool("list_tables", {}))
        served = envelope(await theirs.call_tool("list_tenants", {}))
        done = [envelope(r) for r in await asyncio.gather(*slow)]
        assert refused["success"] is False and refused["error"]["code"] == "RATE_LIMITED"
        assert "DATA_EXPLORER_CALLS_PER_CALLER" in refused["error"]["message"]
        assert served["success"] and all(d["success"] for d in done)
        assert envelope(await mine.call_tool("list_tables", {}))["success"]  # slots come back
