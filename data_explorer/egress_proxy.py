"""``data-explorer egress-proxy``: a small forward proxy that lets runner pods reach only allow-listed hosts.

A standard Kubernetes NetworkPolicy selects peers by IP address, not by name, so the
runner pods are allowed to talk to DNS, PostgreSQL and this proxy only; they reach the
CommCare API through it (``HTTPS_PROXY`` / ``HTTP_PROXY``) and the proxy decides by
host name.

What it does:

* ``CONNECT host:port`` (https): checks the target, connects, answers
  ``200 Connection established`` and then relays bytes both ways. TLS stays end to end;
  the proxy never sees inside it.
* Plain HTTP in absolute form (``GET http://host:port/path HTTP/1.1``): checks the
  target, rewrites the request line to origin form (``GET /path HTTP/1.1``), sets
  ``Host`` from the URI, drops hop-by-hop headers (``Connection``, ``Proxy-Connection``,
  ``Keep-Alive``, ``Proxy-Authorization``, ``Upgrade``, ``TE``, and those named in
  ``Connection``), adds ``Connection: close``, and then relays bytes both ways: the
  request body (``Content-Length`` or chunked) goes up as it is, the response streams
  back as it is. **One request per client connection**: the upstream closes after its
  response and the proxy then closes the client connection; clients simply open
  another connection for their next request.

What it refuses, with a one-line plain-text body:

* ``403`` a host that is not on the allow-list, a port that is not allowed, an IP-literal
  target that is not itself on the list, and (unless ``--allow-private``) a host that
  resolves to a private, loopback, link-local or otherwise non-global address. The
  proxy itself is not confined by the runner NetworkPolicy, so without this check an
  allow-listed name pointing at, say, 10.0.0.5 would open a way into the cluster. The
  addresses checked are the ones connected to (no second lookup). If any address of
  a name is non-global, the name is refused.
* ``400`` a malformed request (bad request line, relative URI, ``https://`` URI without
  CONNECT, user info in the URI, bad header line).
* ``408`` a request head not received within the handshake timeout.
* ``431`` a request head larger than 16 KiB (configurable).
* ``502`` a target that cannot be resolved or connected to.

An allow-list entry is a host name matched exactly and case-insensitively
(``www.commcarehq.org``), ``*.example.org`` for every subdomain of ``example.org`` at any
depth (but not ``example.org`` itself; list both for both), or an IP address, the only
way to allow an IP-literal target.

Each connection is logged in one line (client, method, target host:port, allowed or
refused with the reason, bytes each way). Headers, paths and query strings are never
logged: they carry credentials.

``SIGTERM`` (and ``SIGINT``) stop it: it stops listening, closes open connections and
exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import re
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger("data_explorer.egress_proxy")  # the same name when run with -m

PROG = "data-explorer egress-proxy"
DEFAULT_PORTS: tuple[int, ...] = (443, 80)
DEFAULT_LISTEN_PORT = 3128
MAX_HEADER_BYTES = 16 * 1024
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0
CONNECT_TIMEOUT = 10.0

_CHUNK = 64 * 1024
_DISCARD_SECONDS = 1.0
_DISCARD_BYTES = 4 * 1024 * 1024

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_REQUEST_LINE = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP/1\.[01])$")
_HOP_BY_HOP = frozenset(
    {"connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "te", "upgrade"}
)
_REASONS = {
    200: "Connection established",
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
}


# --- the allow-list: pure, no I/O ------------------------------------------------------------


class AllowListError(ValueError):
    """An allow-list entry or port that cannot be used; the message says why."""


def _host_name(text: str) -> str | None:
    """``text`` as a normalised DNS host name (lower case, no trailing dot), or None if it is not one."""
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253 or not name.isascii():
        return None
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():  # "127.1", "2130706433": numbers some resolvers read as addresses
        return None
    return name


def _ip_literal(text: str) -> str | None:
    """``text`` (IPv6 possibly in brackets) as a normalised IP address, or None if it is not one."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _format_ports(ports: Iterable[int]) -> str:
    return ", ".join(str(p) for p in sorted(ports))


@dataclass(frozen=True)
class AllowList:
    """Which targets the proxy may connect to. Build it with :func:`parse_allow_list`."""

    hosts: frozenset[str] = frozenset()
    """host names allowed exactly (lower case, no trailing dot)"""
    wildcards: frozenset[str] = frozenset()
    """parent domains of ``*.`` entries: every subdomain of these is allowed, the domain itself is not"""
    addresses: frozenset[str] = frozenset()
    """IP literals allowed as targets (normalised)"""
    ports: frozenset[int] = field(default_factory=lambda: frozenset(DEFAULT_PORTS))

    def permits(self, host: str, port: int) -> tuple[bool, str]:
        """Whether ``host:port`` may be connected to, and a one-line reason naming the host."""
        address = _ip_literal(host)
        if address is not None:
            if address not in self.addresses:
                return False, f"{address} is an IP address that is not on the allow-list (IP targets must be listed)"
            allowed = f"{address} is on the allow-list"
            host = address
        else:
            name = _host_name(host)
            if name is None:
                return False, f"{host!r} is not a valid host name"
            host = name
            if name in self.hosts:
                allowed = f"{name} is on the allow-list"
            else:
                parent = next((w for w in self.wildcards if name.endswith("." + w)), None)
                if parent is None:
                    return False, f"{name} is not on the allow-list"
                allowed = f"{name} matches *.{parent} on the allow-list"
        if port not in self.ports:
            return False, f"port {port} of {host} is not allowed (allowed ports: {_format_ports(self.ports)})"
        return True, allowed

    def describe(self) -> str:
        entries = sorted(self.hosts) + sorted("*." + w for w in self.wildcards) + sorted(self.addresses)
        return f"{', '.join(entries)} on ports {_format_ports(self.ports)}"


def _entry_problem(entry: str) -> str:
    """Why ``entry`` is not a usable allow-list entry (only called for entries that are not)."""
    if "://" in entry:
        rest = entry.split("://", 1)[1].split("/", 1)[0].split("@")[-1]
        return f"{entry!r} is a URL; give the host name only (e.g. {rest!r})"
    if any(ch.isspace() for ch in entry):
        return f"{entry!r} contains whitespace; separate entries with commas"
    if "/" in entry or "@" in entry or "?" in entry:
        return f"{entry!r} is not a host name; give the host name only, without path or user"
    if "*" in entry:
        return f"{entry!r}: a wildcard is allowed only as a leading '*.' followed by a domain of two labels or more"
    if ":" in entry:
        return f"{entry!r}: give the host name without a port; allowed ports are set apart (--ports)"
    if not entry.isascii():
        return f"{entry!r} is not ASCII; give internationalised names in their xn-- form"
    return f"{entry!r} is not a valid host name"


def parse_allow_list(text: str, ports: Iterable[int] | str = DEFAULT_PORTS) -> AllowList:
    """Parse allow-list entries separated by commas or line breaks.

    Each entry is a host name (exact, case-insensitive), ``*.domain`` (its subdomains, any
    depth, not the domain itself; the domain needs two labels or more), or an IP address.
    Blank entries, whitespace inside an entry, URLs, paths, ports and other wildcards are
    refused with :class:`AllowListError`. ``ports`` is an iterable of port numbers or text
    for :func:`parse_ports`.
    """
    port_set = parse_ports(ports) if isinstance(ports, str) else _check_ports(ports)
    body = text.strip()
    if not body:
        raise AllowListError("the allow-list is empty; give at least one host name")
    hosts: set[str] = set()
    wildcards: set[str] = set()
    addresses: set[str] = set()
    for raw in re.split(r",|\r\n|\r|\n", body):
        entry = raw.strip()
        if not entry:
            raise AllowListError(f"empty entry in the allow-list {body!r}")
        address = _ip_literal(entry)
        if address is not None:
            addresses.add(address)
            continue
        if entry.startswith("*."):
            parent = _host_name(entry[2:])
            if parent is None:
                raise AllowListError(_entry_problem(entry))
            if "." not in parent:
                raise AllowListError(f"{entry!r} is too broad: a wildcard needs a domain of two labels or more")
            wildcards.add(parent)
            continue
        name = _host_name(entry)
        if name is None:
            raise AllowListError(_entry_problem(entry))
        hosts.add(name)
    return AllowList(frozenset(hosts), frozenset(wildcards), frozenset(addresses), port_set)


def parse_ports(text: str) -> frozenset[int]:
    """Comma-separated port numbers (1-65535), e.g. ``"443,80"``."""
    values: list[int] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry.isdigit():
            raise AllowListError(f"{entry!r} is not a port number" if entry else f"empty entry in the ports {text!r}")
        values.append(int(entry))
    return _check_ports(values)


def _check_ports(ports: Iterable[int]) -> frozenset[int]:
    values = frozenset(ports)
    if not values:
        raise AllowListError("no allowed ports")
    for port in values:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise AllowListError(f"{port!r} is not a port number between 1 and 65535")
    return values


def is_private_address(address: str) -> bool:
    """True for addresses the proxy must not reach unless told to: anything not globally routable."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


# --- the request head: pure parsing ------------------------------------------------------------


class _Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _split_authority(authority: str, default_port: int | None) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) into host and port; raises _Reject(400)."""
    if not authority or "@" in authority:
        raise _Reject(400, "bad target: give host:port without user info")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _Reject(400, "bad target: unclosed '[' in the host")
        host, rest = authority[1:end], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _Reject(400, "bad target: junk after the IPv6 address")
        port_text = rest[1:] if rest else None
    elif ":" in authority:
        host, port_text = authority.rsplit(":", 1)
    else:
        host, port_text = authority, None
    if port_text is None or port_text == "":
        if default_port is None:
            raise _Reject(400, "bad target: CONNECT needs host:port")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _Reject(400, f"bad target: {port_text!r} is not a port number")
    if not host:
        raise _Reject(400, "bad target: no host")
    return host, int(port_text)


@dataclass
class _Head:
    method: str
    host: str
    port: int
    version: str
    origin_target: str = ""  # path and query, plain HTTP only
    headers: list[tuple[str, bytes]] = field(default_factory=list)  # (name, raw line without CRLF)


def _parse_head(lines: list[bytes]) -> _Head:
    try:
        request_line = lines[0].decode("ascii")
    except UnicodeDecodeError:
        raise _Reject(400, "the request line is not ASCII") from None
    match = _REQUEST_LINE.match(request_line)
    if not match:
        raise _Reject(400, "malformed request line; expected 'METHOD target HTTP/1.1'")
    method, target, version = match.groups()
    headers: list[tuple[str, bytes]] = []
    for line in lines[1:]:
        name, sep, _ = line.partition(b":")
        if not sep or not _TOKEN.match(name.decode("latin-1")):
            raise _Reject(400, "malformed header line")
        headers.append((name.decode("latin-1").lower(), line))
    if method == "CONNECT":
        host, port = _split_authority(target, None)
        return _Head(method, host, port, version, headers=headers)
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise _Reject(400, "this is a forward proxy: send an absolute URI (http://host/path) or CONNECT host:port")
    if scheme.lower() != "http":
        raise _Reject(400, f"unsupported scheme {scheme!r}: use CONNECT for https")
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:].split("#", 1)[0]
    host, port = _split_authority(authority, 80)
    if not path.startswith("/"):
        path = "/" + path
    return _Head(method, host, port, version, origin_target=path, headers=headers)


def _upstream_head(head: _Head) -> bytes:
    """The request head sent upstream for plain HTTP: origin form, Host from the URI, Connection: close."""
    named: set[str] = set()
    for name, line in head.headers:
        if name in ("connection", "proxy-connection"):
            value = line.partition(b":")[2].decode("latin-1")
            named.update(token.strip().lower() for token in value.split(",") if token.strip())
    drop = _HOP_BY_HOP | {"host"} | (named - {"transfer-encoding", "content-length"})
    host = f"[{head.host}]" if ":" in head.host else head.host
    authority = host if head.port == 80 else f"{host}:{head.port}"
    out = [f"{head.method} {head.origin_target} {head.version}".encode("ascii"), f"Host: {authority}".encode("ascii")]
    out += [line for name, line in head.headers if name not in drop]
    out.append(b"Connection: close")
    return b"\r\n".join(out) + b"\r\n\r\n"


# --- the proxy ------------------------------------------------------------------------------------


@dataclass
class _Record:
    client: str
    method: str = "-"
    target: str = "-"
    result: str = "closed"
    status: int | None = None
    reason: str = ""
    up: int = 0
    down: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        parts = [f"client={self.client}", f"method={self.method}", f"target={self.target}", f"result={self.result}"]
        if self.status is not None:
            parts.append(f"status={self.status}")
        parts += [f"up={self.up}", f"down={self.down}", f"seconds={time.monotonic() - self.started:.3f}"]
        if self.reason:
            parts.append(f'reason="{self.reason}"')
        return " ".join(parts)


class _Proxy:
    def __init__(self, allow: AllowList, *, allow_private: bool, handshake_timeout: float, idle_timeout: float,
                 connect_timeout: float, max_header_bytes: int):
        self.allow = allow
        self.allow_private = allow_private
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_header_bytes = max_header_bytes
        self.tasks: set[asyncio.Task] = set()

    async def shutdown(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        peer = writer.get_extra_info("peername")
        record = _Record(client=f"{peer[0]}:{peer[1]}" if peer else "?")
        opened: list[asyncio.StreamWriter] = []  # the upstream connection, once there is one
        try:
            await self._serve_one(reader, writer, record, opened)
        except _Reject as exc:
            record.result = "refused" if exc.status == 403 else "error"
            record.status, record.reason = exc.status, exc.message
            await self._respond(reader, writer, exc.status, exc.message)
        except asyncio.CancelledError:
            record.reason = "proxy shutting down"
        except (ConnectionError, OSError) as exc:
            record.reason = f"connection lost: {type(exc).__name__}"
        except Exception as exc:  # a bug must not take the proxy down; the traceback goes to debug
            log.debug("unexpected error", exc_info=True)
            record.result, record.reason = "error", f"internal error: {type(exc).__name__}"
        finally:
            for w in (*opened, writer):
                w.close()
            for w in (*opened, writer):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(w.wait_closed(), 1.0)
            (log.warning if record.result == "refused" else log.info)("%s", record.line())
            self.tasks.discard(task)

    async def _serve_one(self, reader, writer, record: _Record, opened: list[asyncio.StreamWriter]) -> None:
        try:
            async with asyncio.timeout(self.handshake_timeout):
                lines = await self._read_head(reader)
        except TimeoutError:
            raise _Reject(408, f"no complete request head within {self.handshake_timeout:g} seconds") from None
        if lines is None:
            record.reason = "client sent nothing"
            return
        head = _parse_head(lines)
        record.method = head.method
        record.target = f"[{head.host}]:{head.port}" if ":" in head.host else f"{head.host}:{head.port}"
        allowed, reason = self.allow.permits(head.host, head.port)
        if not allowed:
            raise _Reject(403, reason)
        record.reason = reason
        up_reader, up_writer = await self._connect(head.host, head.port)
        opened.append(up_writer)
        record.result = "allowed"
        if head.method == "CONNECT":
            record.status = 200
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            first = _upstream_head(head)
            up_writer.write(first)
            record.up += len(first)
        await self._relay(reader, writer, up_reader, up_writer, record)

    async def _read_head(self, reader: asyncio.StreamReader) -> list[bytes] | None:
        """The request line and header lines (without line ends); None if the client closed at once."""
        lines: list[bytes] = []
        total = 0
        too_large = _Reject(431, f"request head larger than {self.max_header_bytes} bytes")
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # one line longer than the stream's limit
                raise too_large from None
            total += len(line)
            if total > self.max_header_bytes:
                raise too_large
            if not line:
                if not lines and total == 0:
                    return None
                raise _Reject(400, "incomplete request head")
            if not line.endswith(b"\n"):
                raise _Reject(400, "incomplete request head")
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if not line:
                if lines:
                    return lines
                continue  # empty lines before the request line are ignored
            if line[:1] in (b" ", b"\t") and lines:
                raise _Reject(400, "folded header lines are not supported")
            lines.append(line)

    async def _connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        lookup = host.strip("[]")
        try:
            async with asyncio.timeout(self.connect_timeout):
                infos = await loop.getaddrinfo(lookup, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise _Reject(502, f"cannot resolve {lookup}: timed out") from None
        except OSError as exc:
            raise _Reject(502, f"cannot resolve {lookup}: {exc.strerror or type(exc).__name__}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise _Reject(502, f"cannot resolve {lookup}: no addresses")
        if not self.allow_private:
            private = [a for a in addresses if is_private_address(a)]
            if private:
                raise _Reject(403, f"{lookup} resolves to non-public address {private[0]}; "
                                   "refused (no --allow-private)")
        errors: list[str] = []
        for address in addresses:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    return await asyncio.open_connection(address, port, limit=_CHUNK)
            except TimeoutError:
                errors.append(f"{address}: timed out")
            except OSError as exc:
                errors.append(f"{address}: {exc.strerror or type(exc).__name__}")
        raise _Reject(502, f"cannot connect to {lookup}:{port} ({'; '.join(errors)})")

    async def _relay(self, client_reader, client_writer, up_reader, up_writer, record: _Record) -> None:
        """Copy bytes both ways until the upstream side ends, either side fails, or nothing moves for idle_timeout."""
        loop = asyncio.get_running_loop()
        last = [loop.time()]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, attr: str) -> None:
            while True:
                data = await src.read(_CHUNK)
                if not data:
                    break
                dst.write(data)
                setattr(record, attr, getattr(record, attr) + len(data))
                last[0] = loop.time()
                await dst.drain()
            if dst.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    dst.write_eof()

        up = asyncio.create_task(pump(client_reader, up_writer, "up"))
        down = asyncio.create_task(pump(up_reader, client_writer, "down"))
        pending: set[asyncio.Task] = {up, down}
        try:
            while down in pending:
                remaining = last[0] + self.idle_timeout - loop.time()
                if remaining <= 0:
                    record.reason = f"idle for {self.idle_timeout:g} seconds"
                    return
                done, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is not None:
                        side = "client" if task is up else "upstream"
                        record.reason = f"{side} side ended: {type(exc).__name__}"
                        return
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _respond(self, reader, writer, status: int, message: str) -> None:
        """Send a short plain-text error, then read and drop what the client still sends for a moment.

        Closing with unread input makes TCP reset the connection, and the client may then lose
        the response; draining briefly lets it read the answer first.
        """
        body = f"{message}\n".encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):
            writer.write(head + body)
            async with asyncio.timeout(_DISCARD_SECONDS):
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                dropped = 0
                while dropped < _DISCARD_BYTES:
                    chunk = await reader.read(_CHUNK)
                    if not chunk:
                        break
                    dropped += len(chunk)


async def serve(
    host: str,
    port: int,
    allow: AllowList,
    *,
    allow_private: bool = False,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
    max_header_bytes: int = MAX_HEADER_BYTES,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the proxy on ``host:port`` until ``stop`` is set (or the task is cancelled).

    ``ready`` is set once it listens. On the way out it stops listening and closes every
    open connection.
    """
    proxy = _Proxy(allow, allow_private=allow_private, handshake_timeout=handshake_timeout,
                   idle_timeout=idle_timeout, connect_timeout=connect_timeout, max_header_bytes=max_header_bytes)
    server = await asyncio.start_server(proxy.handle, host, port, limit=max_header_bytes, reuse_address=True)
    try:
        bound = ", ".join(_format_sockname(s.getsockname()) for s in server.sockets)
        log.info("egress proxy listening on %s; allowing %s%s", bound, allow.describe(),
                 " (private addresses allowed)" if allow_private else "")
        if ready is not None:
            ready.set()
        if stop is None:
            await asyncio.get_running_loop().create_future()
        else:
            await stop.wait()
    finally:
        server.close()
        await proxy.shutdown()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        log.info("egress proxy stopped")


def _format_sockname(name) -> str:
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- command line ------------------------------------------------------------------------------------


def _allow_argument(text: str) -> str:
    try:
        parse_allow_list(text)
    except AllowListError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _ports_argument(text: str) -> frozenset[int]:
    try:
        return parse_ports(text)
    except AllowListError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _listen_port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0 picks a free one)")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=_listen_port, default=DEFAULT_LISTEN_PORT,
                        help=f"port to listen on (default {DEFAULT_LISTEN_PORT}; 0 picks a free one)")
    parser.add_argument(
        "--allow", action="append", required=True, type=_allow_argument, metavar="HOST[,HOST...]",
        help="host names the proxy may connect to (repeatable, comma-separated): an exact name such as "
        "www.commcarehq.org (case-insensitive), *.example.org for its subdomains (not example.org itself), "
        "or an IP address (the only way to allow an IP-literal target)",
    )
    parser.add_argument("--ports", type=_ports_argument, default=frozenset(DEFAULT_PORTS), metavar="PORT[,PORT...]",
                        help="target ports allowed (default 443,80)")
    parser.add_argument("--allow-private", action="store_true",
                        help="allow targets that resolve to private, loopback or link-local addresses "
                        "(refused by default: the proxy itself can reach inside the cluster)")
    parser.add_argument("--handshake-timeout", type=_seconds, metavar="SECONDS", default=HANDSHAKE_TIMEOUT,
                        help=f"seconds a client has to send its request head (default {HANDSHAKE_TIMEOUT:g})")
    parser.add_argument("--idle-timeout", type=_seconds, metavar="SECONDS", default=IDLE_TIMEOUT,
                        help="seconds a connection may stay silent both ways before it is closed "
                        f"(default {IDLE_TIMEOUT:g})")
    parser.add_argument("--connect-timeout", type=_seconds, metavar="SECONDS", default=CONNECT_TIMEOUT,
                        help=f"seconds to resolve and connect to a target (default {CONNECT_TIMEOUT:g})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A forward proxy (CONNECT for https, absolute-URI requests for plain http) that connects\n"
        "only to allow-listed host names. Runner pods use it through HTTPS_PROXY / HTTP_PROXY; their\n"
        "NetworkPolicy lets them reach only DNS, PostgreSQL and this proxy.",
        epilog="Refused targets get 403 with a one-line reason. Plain http is one request per connection.\n"
        "Each connection is logged in one line (never headers, paths or queries). SIGTERM stops it.\n\n"
        "example:\n  data-explorer egress-proxy --allow www.commcarehq.org,*.commcarehq.org",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the proxy with parsed arguments until SIGTERM or SIGINT; 0 when it stopped cleanly."""
    try:
        allow = parse_allow_list(",".join(args.allow), args.ports)
    except AllowListError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop.set)
        await serve(args.host, args.port, allow, allow_private=args.allow_private,
                    handshake_timeout=args.handshake_timeout, idle_timeout=args.idle_timeout,
                    connect_timeout=args.connect_timeout, stop=stop)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"{PROG}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """``data-explorer egress-proxy [options]``; returns the exit code (2 for bad arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage or the error
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
