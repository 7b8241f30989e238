"""Random tokens cannot make CommCare calls at will: refusals are limited per client address, and kept
apart from the verified callers' cache."""

from __future__ import annotations

import secrets

import httpx
import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.security]

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
           "MCP-Protocol-Version": "2025-06-18"}


def _identity_calls(world) -> int:
    return sum(world.sim.stats()["requests"].get("identity", {}).values())


async def test_refused_tokens_from_one_address_are_answered_429_before_commcare_is_asked(world, http_gateway):
    before = _identity_calls(world)
    statuses = []
    async with httpx.AsyncClient(timeout=30) as attacker:
        for _ in range(50):
            response = await attacker.post(http_gateway.url, json=LIST, headers={
                **HEADERS, "Authorization": f"Bearer {secrets.token_urlsafe(24)}"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    assert _identity_calls(world) - before <= 20  # the 30 others never reached CommCare
    # another address is not held back by this one, and a verified caller is served
    other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=other, timeout=30) as caller:
        response = await caller.post(http_gateway.url, json={**LIST, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
            headers={**HEADERS, "Authorization": world.key()})
        assert response.status_code == 200


async def test_refused_tokens_do_not_push_verified_callers_out_of_the_cache(world):
    from data_explorer.mcp_gateway.auth import CommCareAuthenticator

    authenticator = CommCareAuthenticator(world.settings(), max_entries=5)
    token = world.key()
    assert await authenticator.authenticate(token) is not None
    for _ in range(12):
        assert await authenticator.authenticate(secrets.token_urlsafe(24)) is None
    assert authenticator.cached(token) is not None  # still verified, without asking CommCare again
