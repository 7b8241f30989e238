"""The little HTTP layer the simulator needs: requests, responses, and cutting connections.

A plain ASGI app is enough and fast; the one thing ASGI cannot do is drop a
connection before any byte is sent, so uvicorn is given a protocol class that
puts its transport into the scope (``sim.transport``).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from data_explorer.simulator.queries import ApiError

MAX_BODY = 1 << 20
TRANSPORT_KEY = "sim.transport"


@dataclass
class Request:
    scope: dict[str, Any]
    receive: Any
    method: str
    path: str
    pairs: list[tuple[str, str]]
    headers: dict[str, str]
    match: dict[str, str] = field(default_factory=dict)
    user: Any = None

    @property
    def base_url(self) -> str:
        host = self.headers.get("host")
        if not host:
            server = self.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{self.scope.get('scheme', 'http')}://{host}"

    @property
    def port(self) -> str:
        """The port the client connected to, as its Host header names it (else the server's)."""
        host = self.headers.get("host", "")
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit() and not name.endswith(":"):
            return port
        server = self.scope.get("server") or ("127.0.0.1", 80)
        return str(server[1])

    async def body(self) -> bytes:
        chunks, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(413, b'{"error": "request body too large"}')
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def raw_headers(self, length: int | None = None) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-length", str(len(self.body) if length is None else length).encode())]
        if self.content_type:
            headers.append((b"content-type", self.content_type.encode()))
        headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in self.headers]
        return headers


def empty(status: int) -> Response:
    """How v0.5 resources answer 403, 404 and 429: no body at all."""
    return Response(status, b"", "text/html; charset=utf-8")


async def send(send_: Any, response: Response) -> None:
    await send_({"type": "http.response.start", "status": response.status, "headers": response.raw_headers()})
    await send_({"type": "http.response.body", "body": response.body})


async def send_half_and_drop(scope: dict, send_: Any, response: Response) -> None:
    """Announce the whole body, send half of it, and cut the connection."""
    await send_({"type": "http.response.start", "status": response.status, "headers": response.raw_headers()})
    await send_({"type": "http.response.body", "body": response.body[: len(response.body) // 2], "more_body": True})
    await drop(scope)


async def drop(scope: dict) -> bool:
    """Abort the connection at once; False when the server gave no transport to abort."""
    transport = scope.get(TRANSPORT_KEY)
    if transport is None:
        return False
    transport.abort()
    for _ in range(3):  # let the server notice the disconnect before the app returns
        await asyncio.sleep(0)
    return True


class DroppingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with the connection's transport in each request's scope."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: dict, receive: Any, send_: Any) -> None:
            scope[TRANSPORT_KEY] = self.transport
            await inner(scope, receive, send_)

        self.app = app

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Headers and body are written separately: without TCP_NODELAY the body waits for a delayed ACK.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
