"""Helpers for the gateway tests: the world of users and project spaces, MCP clients, envelopes."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, AsyncIterator

from data_explorer.simulator import DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, RunningSimulator


class World:
    """Two CommCare users, three project spaces: `mine` belongs to demo@, `theirs` and `third` to other@."""

    def __init__(self, sim: RunningSimulator, domains: tuple[str, str, str], make_settings, db):
        self.sim, self.db = sim, db
        self.mine, self.theirs, self.third = domains
        self.env = {"COMMCARE_BASE_URL": sim.base_url, "COMMCARE_USERNAME": DEMO_USER, "COMMCARE_API_KEY": DEMO_API_KEY}
        self._make_settings = make_settings

    def settings(self, **env):
        return self._make_settings(**{**self.env, **env})

    @staticmethod
    def key(user: str = DEMO_USER) -> str:
        return f"ApiKey {user}:{DEMO_API_KEY if user == DEMO_USER else OTHER_API_KEY}"


class HttpGateway:
    def __init__(self, url: str, gateway: Any):
        self.url, self.gateway = url, gateway


@contextlib.asynccontextmanager
async def http_client(url: str, authorization: str | None, mode: str = "auto") -> AsyncIterator[Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": authorization} if authorization else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client


def stdio_parameters(world: World, home, **env):
    from mcp.client.stdio import StdioServerParameters

    settings = world.settings(**env)
    values = {k: str(v) for k, v in settings.values.items() if v is not None}
    values["DATA_EXPLORER_HOME"] = str(home)
    return StdioServerParameters(
        command=sys.executable, args=["-m", "data_explorer.cli", "serve", "--transport", "stdio"],
        env={**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}, **values},
    )


@contextlib.asynccontextmanager
async def stdio_client(world: World, home, **env) -> AsyncIterator[Any]:
    from mcp import Client

    async with Client(stdio_parameters(world, home, **env)) as client:
        yield client


def envelope(result) -> dict[str, Any]:
    """The envelope of a tool result, checked to be the same in structured and text form."""
    structured = result.structured_content
    assert structured is not None, result
    assert json.loads(result.content[0].text) == structured
    assert result.is_error == (not structured["success"])
    return structured
