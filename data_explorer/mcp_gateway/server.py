"""The MCP server: the declared tools on the official SDK, over stdio or streamable HTTP.

Over HTTP every request carries a bearer token (a CommCare OAuth access token,
or ``ApiKey user:key``) verified against CommCare; over stdio the caller is the
CommCare user the gateway was started as. Either way the caller's tenants are
the project spaces CommCare says the user belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, AsyncIterator

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from data_explorer.config import Settings
from data_explorer.control.local import LocalControlPlane
from data_explorer.mcp_gateway.auth import (
    AuthUnavailable,
    CommCareAuthenticator,
    identity_from_settings,
)
from data_explorer.mcp_gateway.http_auth import ApiKeyHeaderMiddleware, GatewayTokenVerifier, current_identity
from data_explorer.mcp_gateway.calls import Caller, ToolCall, gateway_tool
from data_explorer.mcp_gateway.definitions import TOOLS
from data_explorer.mcp_gateway.envelope import Envelope, ErrorInfo, ToolFailure, to_result
from data_explorer.mcp_gateway.gateway import Gateway
from data_explorer.warehouse.credentials import store_run_credential
from data_explorer.warehouse.database import Database
from data_explorer.warehouse.query import QueryExecutor

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Data Explorer: read-only SQL over CommCare project spaces you belong to. "
    "Start with list_tenants; if a tenant has no data, run_materialization; then list_tables, describe_table "
    "and query. Every answer is an envelope {success, data | error{code, message}, tenant_id, schema, warnings, timing_ms}."
)


def _argument_problem(exc: ValidationError) -> str:
    """Which arguments were wrong and why, without echoing their values."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if p != "ctx") or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class GatewayServer(MCPServer):
    """MCPServer whose argument and unknown-tool errors are envelopes with an audit row too."""

    gateway: Gateway

    async def call_tool(self, name: str, arguments: dict[str, Any], context=None):
        started = time.monotonic()
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                code, message = "VALIDATION_ERROR", f"invalid arguments for {name}: {_argument_problem(exc.__cause__)}"
            elif name not in {t.name for t in TOOLS}:
                code, message = "NOT_FOUND", f"no tool {name!r}; tools: {', '.join(t.name for t in TOOLS)}"
            else:
                raise
        envelope = Envelope[dict](success=False, error=ErrorInfo(code=code, message=message))
        envelope.timing_ms = int((time.monotonic() - started) * 1000)
        try:
            call = ToolCall(self.gateway, await self.gateway.caller(context), context, name)
        except ToolFailure:
            call = None
        await self.gateway.audit(call, name, dict(arguments or {}), "error", code, None, started)
        return to_result(envelope)


def build_server(gateway: Gateway, **kwargs: Any) -> GatewayServer:
    server = GatewayServer("data-explorer", instructions=INSTRUCTIONS, **kwargs)
    server.gateway = gateway
    for spec in TOOLS:
        server.add_tool(
            gateway_tool(gateway, spec.name, spec.data_model)(spec.body),
            name=spec.name, title=spec.title, description=spec.description, annotations=spec.annotations,
        )
    return server


def _caller(identity: Any, transport: str) -> Caller | None:
    if identity is None:
        return None
    return Caller(identity.username, tuple(identity.domains), identity.credential, transport)


def make_control_plane(settings: Settings, db: Database, store):
    """Local (child processes) by default; MaterializationRun resources with DATA_EXPLORER_CONTROL_PLANE=kubernetes."""
    if settings["DATA_EXPLORER_CONTROL_PLANE"] == "kubernetes":
        from data_explorer.control.kubernetes import KubernetesControlPlane
        from data_explorer.kube.api import KubeApi, current_namespace

        return KubernetesControlPlane(KubeApi.from_environment(), current_namespace(settings))
    return LocalControlPlane(settings, db, store_credential=store)


def make_gateway(settings: Settings, db: Database, transport: str, identify, authenticator: CommCareAuthenticator) -> Gateway:
    def store(conn, run_id, credential):
        store_run_credential(conn, settings.control_schema, run_id, credential, gateway.box)

    control_plane = make_control_plane(settings, db, store)
    executor = QueryExecutor(
        db.dsn,
        max_rows=settings["DATA_EXPLORER_QUERY_MAX_ROWS"],
        max_bytes=settings["DATA_EXPLORER_QUERY_MAX_BYTES"],
        statement_timeout=settings["DATA_EXPLORER_QUERY_TIMEOUT"],
        pool_size=settings["DATA_EXPLORER_QUERY_SESSIONS"],
    )
    gateway = Gateway(settings, db, control_plane, executor, identify, transport, authenticator)
    return gateway


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    """The gateway's background work (the idle-schema sweep, collecting runners, closing idle
    query sessions) for as long as it serves."""
    tasks = [asyncio.create_task(gateway.sweep_forever()), asyncio.create_task(gateway.maintain_forever())]
    try:
        yield gateway
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await gateway.close()


async def serve_stdio(settings: Settings, db: Database) -> None:
    identity = await identity_from_settings(settings)
    caller = _caller(identity, "stdio")

    async def identify(ctx: Any) -> Caller | None:
        return caller

    gateway = make_gateway(settings, db, "stdio", identify, CommCareAuthenticator(settings))
    async with running(gateway):
        await build_server(gateway).run_stdio_async()


def http_app(settings: Settings, db: Database, host: str, port: int):
    """The ASGI app of the streamable HTTP transport, with CommCare bearer authentication, and its gateway."""
    authenticator = CommCareAuthenticator(settings)

    async def identify(ctx: Any) -> Caller | None:
        try:
            return _caller(await current_identity(authenticator), "http")
        except AuthUnavailable as exc:
            raise ToolFailure("UPSTREAM_UNAVAILABLE", f"CommCare could not verify the caller: {exc}") from None

    gateway = make_gateway(settings, db, "http", identify, authenticator)
    auth = AuthSettings(
        issuer_url=settings.require_commcare(credential=False).base_url,
        resource_server_url=f"http://{host}:{port}/mcp",
        validate_token_resource=False,  # CommCare tokens are not bound to this server; CommCare verifies them
    )
    server = build_server(gateway, token_verifier=GatewayTokenVerifier(authenticator), auth=auth)
    return ApiKeyHeaderMiddleware(server.streamable_http_app(streamable_http_path="/mcp", host=host)), gateway


async def serve_http(settings: Settings, db: Database, host: str, port: int) -> None:
    import uvicorn

    app, gateway = http_app(settings, db, host, port)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    async with running(gateway):
        await uvicorn.Server(config).serve()
