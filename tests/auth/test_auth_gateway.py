"""The SDK side, end to end: an MCPServer with GatewayTokenVerifier behind ApiKeyHeaderMiddleware,
served by uvicorn, called by the official MCP client and by plain HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import httpx
import pytest
import uvicorn
from auth_helpers import DOMAINS, DEMO_USER, OTHER_USER, api_key, count, oauth_tokens
from net_helpers import free_port as _free_port

from data_explorer.mcp_gateway.auth import AuthUnavailable, CommCareAuthenticator
from data_explorer.mcp_gateway.http_auth import ApiKeyHeaderMiddleware, GatewayTokenVerifier, current_identity

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


class Served:
    def __init__(self, url: str, authenticator: CommCareAuthenticator):
        self.url, self.authenticator = url, authenticator


@pytest.fixture
def served(sim, settings_for):
    """A minimal gateway: one tool that answers with the caller's identity as current_identity() sees it."""
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer

    port = _free_port()
    authenticator = CommCareAuthenticator(settings_for(sim))
    server = MCPServer(
        "auth-test",
        token_verifier=GatewayTokenVerifier(authenticator),
        auth=AuthSettings(issuer_url=sim.base_url, resource_server_url=f"http://127.0.0.1:{port}/mcp",
                          validate_token_resource=False),
    )

    @server.tool()
    async def whoami() -> dict:
        identity = await current_identity(authenticator)
        return {"username": identity.username, "domains": list(identity.domains),
                "credential": type(identity.credential).__name__}

    @server.tool()
    async def verified_user() -> str:
        """Without the authenticator: only what the verifier found for this very request."""
        identity = await current_identity()
        return identity.username if identity else "(none)"

    app = ApiKeyHeaderMiddleware(server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1"))
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(uv.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    yield Served(f"http://127.0.0.1:{port}/mcp", authenticator)
    uv.should_exit = True
    thread.join(timeout=20)


@contextlib.asynccontextmanager
async def mcp_client(url: str, authorization: str):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": authorization}, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


def _answer(result) -> dict:
    assert not result.is_error, result
    return json.loads(result.content[0].text)


def _post(url: str, authorization: str | None) -> httpx.Response:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    return httpx.post(url, json=INITIALIZE, headers=headers, timeout=30)


@pytest.mark.parametrize("form", ["ApiKey", "apikey", "Bearer ApiKey"])
async def test_api_keys_work_in_either_header_form(sim, served, form):
    key = api_key().split(" ", 1)[1]
    async with mcp_client(served.url, f"{form} {key}") as client:
        result = await client.call_tool("whoami", {})
    assert _answer(result) == {"username": DEMO_USER, "domains": [DOMAINS[0]], "credential": "ApiKeyCredential"}


async def test_an_oauth_token_works_and_tools_reuse_the_verification(sim, served):
    token = oauth_tokens(sim, OTHER_USER)["access_token"]
    async with mcp_client(served.url, f"Bearer {token}") as client:
        for _ in range(5):
            result = await client.call_tool("whoami", {})
            assert _answer(result) == {
                "username": OTHER_USER, "domains": sorted(DOMAINS[1:]), "credential": "BearerCredential"}
        assert (await client.call_tool("verified_user", {})).content[0].text == OTHER_USER
    # every HTTP request is verified, but within the cache time CommCare was asked once
    assert count(sim, "identity") == 1 and count(sim, "user_domains") == 1


@pytest.mark.parametrize("authorization", [None, "ApiKey demo@example.org:wrong", "Bearer nope", "Basic abc"])
async def test_refused_or_missing_credentials_get_401(sim, served, authorization):
    response = _post(served.url, authorization)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_commcare_down_gives_503_with_retry_after_not_401(sim, served):
    sim.set_faults({"rules": [{"kind": "server_error", "rate": 1.0, "scope": "identity"}]})
    response = _post(served.url, api_key())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"
    assert "demo-api-key" not in response.text
    sim.set_faults({"rules": []})
    served.authenticator._refusals.entries.clear()  # skip the few seconds an outage is remembered (kept apart)
    assert _post(served.url, api_key()).status_code == 200


async def test_the_verifier_fills_the_access_token(sim, settings_for):
    verifier = GatewayTokenVerifier(CommCareAuthenticator(settings_for(sim)))
    access = await verifier.verify_token(api_key(OTHER_USER))
    assert access.client_id == OTHER_USER and access.subject == OTHER_USER and access.scopes == []
    assert access.claims == {"domains": sorted(DOMAINS[1:])} and access.expires_at is None
    assert await verifier.verify_token("ApiKey x@example.org:nope") is None


async def test_without_the_middleware_an_outage_is_an_error_not_a_refusal(settings_for, closed_url):
    verifier = GatewayTokenVerifier(CommCareAuthenticator(settings_for(closed_url)))
    with pytest.raises(AuthUnavailable):
        await verifier.verify_token(api_key())


async def test_no_identity_outside_a_verified_request(sim, settings_for):
    assert await current_identity(CommCareAuthenticator(settings_for(sim))) is None
