"""The audit log fails closed: a call whose audit row cannot be written gets no answer but an error."""

from __future__ import annotations

import psycopg
import pytest
from gateway_helpers import envelope, http_client
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from data_explorer.warehouse.control_tables import AUDIT_APPEND_ARGUMENTS

pytestmark = [pytest.mark.anyio, pytest.mark.security]


async def test_a_call_whose_audit_row_cannot_be_written_is_refused(world, http_gateway, conn):
    role = conninfo_to_dict(http_gateway.gateway._audit.conninfo)["user"]
    async with http_client(http_gateway.url, world.key()) as client:
        assert envelope(await client.call_tool("list_tenants", {}))["success"]  # audited: answered
        conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION data_explorer.audit_append({}) FROM {}").format(sql.SQL(AUDIT_APPEND_ARGUMENTS), sql.Identifier(role)))
        try:
            refused = envelope(await client.call_tool("list_tenants", {}))
        finally:
            conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION data_explorer.audit_append({}) TO {}").format(sql.SQL(AUDIT_APPEND_ARGUMENTS), sql.Identifier(role)))
        assert refused["success"] is False and refused["error"]["code"] == "INTERNAL_ERROR"
        assert refused["data"] is None and "withheld" in refused["error"]["message"]
        assert envelope(await client.call_tool("list_tenants", {}))["success"]  # and answers again once it can
