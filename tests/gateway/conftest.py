"""Fixtures for the MCP gateway: a simulator with two users and three project spaces, the gateway
over streamable HTTP (uvicorn on a free port) and over stdio (a child process), and the official
MCP client to talk to either."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
import uvicorn
from gateway_helpers import HttpGateway, World
from net_helpers import free_port

from data_explorer.simulator import RunningSimulator, demo_config


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def world(make_settings, db) -> World:
    tag = secrets.token_hex(3)
    domains = (f"g-{tag}-a", f"g-{tag}-b", f"g-{tag}-c")
    with RunningSimulator(demo_config(cases=200, users=5, domains=domains)) as sim:
        yield World(sim, domains, make_settings, db)


@pytest.fixture
def http_gateway(world):
    """The gateway's HTTP app served by uvicorn in a thread, as `data-explorer serve --transport http` serves it."""
    import asyncio

    from data_explorer.mcp_gateway.server import http_app, running

    port = free_port()
    settings = world.settings(COMMCARE_USERNAME="", COMMCARE_API_KEY="")  # callers bring their own credential
    assert settings.require_commcare(credential=False) and not settings["COMMCARE_API_KEY"]
    app, gateway = http_app(settings, world.db, "127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))

    def serve():
        async def main():
            async with running(gateway):
                await server.serve()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    yield HttpGateway(f"http://127.0.0.1:{port}/mcp", gateway)
    server.should_exit = True
    thread.join(timeout=20)


