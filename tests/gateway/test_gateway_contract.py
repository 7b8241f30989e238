"""The MCP surface agents see, as a committed snapshot: a change to a tool's name, hints, description
or schemas fails here until the snapshot is updated on purpose (UPDATE_CONTRACT=1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gateway_helpers import http_client

from data_explorer.mcp_gateway.envelope import ERROR_CODES

pytestmark = pytest.mark.anyio
SNAPSHOT = Path(__file__).parent / "contract" / "tools.json"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "tools.md"


async def test_tools_match_the_committed_contract(world, http_gateway):
    async with http_client(http_gateway.url, world.key()) as client:
        tools = (await client.list_tools()).tools
    current = {
        t.name: {
            "title": t.title,
            "description": t.description,
            "annotations": t.annotations.model_dump(mode="json", exclude_none=True),
            "input_schema": t.input_schema,
            "output_schema": t.output_schema,
        }
        for t in sorted(tools, key=lambda t: t.name)
    }
    if os.environ.get("UPDATE_CONTRACT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), "the tool contract changed: review it, then UPDATE_CONTRACT=1"


def test_every_error_code_and_tool_is_documented():
    doc = DOCS.read_text()
    for code, meaning in ERROR_CODES.items():
        assert f"| `{code}` |" in doc, code
    for name in json.loads(SNAPSHOT.read_text()):
        assert f"### `{name}`" in doc, name
