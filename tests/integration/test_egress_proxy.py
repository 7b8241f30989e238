"""The egress proxy over real sockets: a real upstream HTTP(S) server on 127.0.0.1, the proxy in a
thread (or a subprocess for the command line), httpx and raw sockets as clients."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from data_explorer.egress_proxy import main, parse_allow_list, serve
from net_helpers import free_port as _free_port

BIG = bytes(range(256)) * (5 * 1024 * 4)  # 5 MiB
SECRET = "ApiKey someone@example.org:secret-key-0123456789"
LOGGER = "data_explorer.egress_proxy"


# --- the upstream ----------------------------------------------------------------------------------


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/big":
            return self._send(BIG, "application/octet-stream")
        seen = {
            "method": "GET",
            "path": self.path,
            "host": self.headers.get("Host"),
            "connection": self.headers.get("Connection"),
            "proxy_connection": self.headers.get("Proxy-Connection"),
            "keep_alive": self.headers.get("Keep-Alive"),
            "authorization": self.headers.get("Authorization"),
        }
        self._send(json.dumps(seen).encode(), "application/json")

    def do_POST(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(parts)
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self._send(body, "application/octet-stream")


def _start(server: ThreadingHTTPServer):
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def upstream_port():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    _start(server)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A self-signed certificate for localhost: (server context, client context)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client_ctx = ssl.create_default_context(cafile=str(folder / "cert.pem"))
    return server_ctx, client_ctx


@pytest.fixture(scope="module")
def tls_upstream_port(tls):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.socket = tls[0].wrap_socket(server.socket, server_side=True)
    _start(server)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# --- the proxy in a thread ----------------------------------------------------------------------------


class ProxyThread:
    def __init__(self, allow, **options):
        self.allow, self.options = allow, options
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.error: BaseException | None = None

    def __enter__(self):
        started = threading.Event()

        async def run():
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            ready = asyncio.Event()
            task = asyncio.create_task(
                serve("127.0.0.1", self.port, self.allow, ready=ready, stop=self.stop, **self.options))
            waiting = asyncio.create_task(ready.wait())
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            started.set()
            await task

        def target():
            try:
                asyncio.run(run())
            except BaseException as exc:  # reported to the test thread
                self.error = exc
                started.set()

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        assert started.wait(5), "proxy did not start"
        if self.error:
            raise self.error
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(5)
        assert not self.thread.is_alive(), "proxy did not stop"
        assert self.error is None


@pytest.fixture(scope="module")
def dead_port():
    return _free_port()  # nothing listens there


@pytest.fixture(scope="module")
def ports(upstream_port, tls_upstream_port, dead_port):
    return [upstream_port, tls_upstream_port, dead_port]


@pytest.fixture(scope="module")
def proxy(ports):
    """Allows localhost and 127.0.0.1 on the upstream ports, private addresses included."""
    with ProxyThread(parse_allow_list("localhost,127.0.0.1", ports), allow_private=True) as running:
        yield running


@pytest.fixture(scope="module")
def strict_proxy(ports):
    """The same allow-list without --allow-private."""
    with ProxyThread(parse_allow_list("localhost,127.0.0.1", ports)) as running:
        yield running


@pytest.fixture(scope="module")
def impatient_proxy(ports):
    with ProxyThread(parse_allow_list("localhost", ports), allow_private=True,
                     handshake_timeout=0.3, idle_timeout=0.5) as running:
        yield running


def client(proxy: ProxyThread, **kwargs) -> httpx.Client:
    return httpx.Client(proxy=proxy.url, trust_env=False, timeout=10, **kwargs)


# --- raw sockets -------------------------------------------------------------------------------------


def _connect(proxy: ProxyThread) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    return sock


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _exchange(proxy: ProxyThread, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request`` raw; return the status line and the body of the answer, read to the end."""
    with _connect(proxy) as sock:
        sock.sendall(request)
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def _wait_for_log(caplog, needle: str, timeout: float = 3.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        found = [line for line in lines if needle in line]
        if found:
            return found[-1]
        time.sleep(0.02)
    raise AssertionError(f"no log line with {needle!r} in {lines}")


# --- allowed traffic ---------------------------------------------------------------------------------


def test_plain_http_get_goes_through_in_origin_form(proxy, upstream_port, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with client(proxy) as http:
        response = http.get(f"http://localhost:{upstream_port}/json?token=query-secret&x=1",
                            headers={"Authorization": SECRET, "Proxy-Connection": "keep-alive"})
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/json?token=query-secret&x=1"  # origin form, query kept
    assert seen["host"] == f"localhost:{upstream_port}"
    assert seen["connection"] == "close"
    assert seen["proxy_connection"] is None
    assert seen["authorization"] == SECRET  # end-to-end headers pass through...

    line = _wait_for_log(caplog, f"target=localhost:{upstream_port}")
    assert "result=allowed" in line and "method=GET" in line
    down = int(line.split("down=")[1].split()[0])
    assert down > len(response.content)  # the whole response, head included
    assert int(line.split("up=")[1].split()[0]) > 0
    logged = caplog.text
    assert "secret-key" not in logged and "query-secret" not in logged and "/json" not in logged  # ...but are never logged


def test_the_host_header_comes_from_the_uri(proxy, upstream_port):
    status, body = _exchange(proxy, f"GET http://LOCALHOST:{upstream_port}/json HTTP/1.1\r\n"
                                    f"Host: evil.example\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n"
                                    f"Keep-Alive: timeout=5\r\n\r\n".encode())
    assert status == b"HTTP/1.1 200 OK"
    seen = json.loads(body)
    assert seen["host"].lower() == f"localhost:{upstream_port}"
    assert seen["keep_alive"] is None and seen["connection"] == "close"


def test_a_large_body_streams_back_exactly(proxy, upstream_port):
    with client(proxy) as http:
        response = http.get(f"http://localhost:{upstream_port}/big")
    assert response.status_code == 200
    assert len(response.content) == len(BIG) and response.content == BIG


def test_post_bodies_go_up_by_length_and_chunked(proxy, upstream_port):
    payload = os.urandom(1024 * 1024)
    with client(proxy) as http:
        sized = http.post(f"http://localhost:{upstream_port}/echo", content=payload)
        chunked = http.post(f"http://localhost:{upstream_port}/echo",
                            content=(payload[i:i + 100_000] for i in range(0, len(payload), 100_000)))
    assert sized.status_code == 200 and sized.content == payload
    assert chunked.status_code == 200 and chunked.content == payload


def test_an_allowed_ip_literal_goes_through(proxy, upstream_port):
    with client(proxy) as http:
        response = http.get(f"http://127.0.0.1:{upstream_port}/json")
    assert response.status_code == 200 and response.json()["host"] == f"127.0.0.1:{upstream_port}"


def test_connect_tunnels_bytes_both_ways(proxy, upstream_port, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with _connect(proxy) as sock:
        sock.sendall(f"CONNECT localhost:{upstream_port} HTTP/1.1\r\nHost: localhost:{upstream_port}\r\n\r\n".encode())
        head, rest = _read_head(sock)
        assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 Connection established"
        assert rest == b""
        sock.sendall(b"GET /json?via=tunnel HTTP/1.1\r\nHost: tunnelled\r\nConnection: close\r\n\r\n")
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body) == {**json.loads(body), "path": "/json?via=tunnel", "host": "tunnelled"}
    line = _wait_for_log(caplog, "method=CONNECT")
    assert "result=allowed" in line and "status=200" in line and f"down={len(answer)}" in line


def test_https_through_the_tunnel_with_httpx(proxy, tls_upstream_port, tls):
    with client(proxy, verify=tls[1]) as http:
        response = http.get(f"https://localhost:{tls_upstream_port}/json", headers={"Authorization": SECRET})
        big = http.get(f"https://localhost:{tls_upstream_port}/big")
    assert response.status_code == 200
    assert response.json()["path"] == "/json" and response.json()["authorization"] == SECRET
    assert big.content == BIG


# --- refusals ----------------------------------------------------------------------------------------


def test_a_host_not_on_the_list_is_forbidden(proxy, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with client(proxy) as http:
        response = http.get("http://not-allowed.example/steal", headers={"Authorization": SECRET})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "not-allowed.example is not on the allow-list\n"
    line = _wait_for_log(caplog, "target=not-allowed.example:80")
    assert "result=refused" in line and "status=403" in line and "up=0" in line
    assert "secret-key" not in caplog.text


def test_a_refused_post_still_gets_its_answer(proxy):
    with client(proxy) as http:
        response = http.post("http://not-allowed.example/upload", content=os.urandom(2 * 1024 * 1024))
    assert response.status_code == 403 and "not on the allow-list" in response.text


def test_a_port_not_allowed_is_forbidden(proxy):
    with client(proxy) as http:
        response = http.get("http://localhost:1/")
    assert response.status_code == 403
    assert "port 1 of localhost is not allowed" in response.text


def test_an_unlisted_ip_literal_is_forbidden(proxy, upstream_port):
    with client(proxy) as http:
        response = http.get(f"http://127.0.0.2:{upstream_port}/json")
    assert response.status_code == 403 and "127.0.0.2 is an IP address that is not on the allow-list" in response.text


def test_connect_to_a_refused_host_is_forbidden(proxy):
    status, body = _exchange(proxy, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n")
    assert status == b"HTTP/1.1 403 Forbidden"
    assert body == b"evil.example is not on the allow-list\n"


def test_httpx_sees_a_refused_tunnel_as_a_proxy_error(proxy):
    with client(proxy) as http, pytest.raises(httpx.ProxyError, match="403"):
        http.get("https://evil.example/")


def test_private_addresses_are_refused_without_allow_private(strict_proxy, upstream_port):
    with client(strict_proxy) as http:
        by_name = http.get(f"http://localhost:{upstream_port}/json")
        by_address = http.get(f"http://127.0.0.1:{upstream_port}/json")
    assert by_name.status_code == 403 and "localhost resolves to non-public address" in by_name.text
    assert by_address.status_code == 403 and "non-public address 127.0.0.1" in by_address.text
    status, body = _exchange(strict_proxy, f"CONNECT localhost:{upstream_port} HTTP/1.1\r\n\r\n".encode())
    assert status == b"HTTP/1.1 403 Forbidden" and b"non-public" in body


@pytest.mark.parametrize(
    "request_bytes, reason",
    [
        (b"HELLO\r\n\r\n", b"malformed request line"),
        (b"GET /relative HTTP/1.1\r\nHost: localhost\r\n\r\n", b"send an absolute URI"),
        (b"GET https://localhost/ HTTP/1.1\r\n\r\n", b"use CONNECT for https"),
        (b"GET http://user@localhost/ HTTP/1.1\r\n\r\n", b"without user info"),
        (b"GET http://localhost:99999/ HTTP/1.1\r\n\r\n", b"not a port number"),
        (b"CONNECT localhost HTTP/1.1\r\n\r\n", b"CONNECT needs host:port"),
        (b"GET http://localhost/ HTTP/2.0\r\n\r\n", b"malformed request line"),
        (b"GET http://localhost/ HTTP/1.1\r\nNo colon here\r\n\r\n", b"malformed header line"),
        (b"GET http://localhost/ HTTP/1.1\r\nHost : localhost\r\n\r\n", b"malformed header line"),
        (b"GET http://localhost/ HTTP/1.1\r\nHost: x\r\n", b"incomplete request head"),
    ],
)
def test_malformed_requests_get_400(proxy, request_bytes, reason):
    with _connect(proxy) as sock:
        sock.sendall(request_bytes)
        sock.shutdown(socket.SHUT_WR)
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request"
    assert reason in body


@pytest.mark.parametrize("shape", ["one long header", "many headers"])
def test_oversized_request_heads_get_431(proxy, upstream_port, shape):
    if shape == "one long header":
        headers = b"X-Big: " + b"a" * 20_000 + b"\r\n"
    else:
        headers = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(200))
    status, body = _exchange(proxy, f"GET http://localhost:{upstream_port}/json HTTP/1.1\r\n".encode() + headers + b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"larger than 16384 bytes" in body


def test_an_upstream_that_is_down_gets_502(proxy, dead_port):
    with client(proxy) as http:
        response = http.get(f"http://localhost:{dead_port}/json")
    assert response.status_code == 502
    assert f"cannot connect to localhost:{dead_port}" in response.text
    status, _ = _exchange(proxy, f"CONNECT 127.0.0.1:{dead_port} HTTP/1.1\r\n\r\n".encode())
    assert status == b"HTTP/1.1 502 Bad Gateway"


# --- timeouts ----------------------------------------------------------------------------------------


def test_a_slow_request_head_gets_408(impatient_proxy):
    started = time.monotonic()
    with _connect(impatient_proxy) as sock:
        sock.sendall(b"GET http://localhost/ HTTP/1.1\r\n")  # and then nothing
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
    assert time.monotonic() - started < 3


def test_an_idle_tunnel_is_closed(impatient_proxy, upstream_port):
    started = time.monotonic()
    with _connect(impatient_proxy) as sock:
        sock.sendall(f"CONNECT localhost:{upstream_port} HTTP/1.1\r\n\r\n".encode())
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200")
        assert _read_all(sock) == b""  # the proxy closes it after 0.5 s of silence
    assert 0.4 < time.monotonic() - started < 3


def test_a_client_that_closes_at_once_is_no_trouble(proxy, upstream_port):
    _connect(proxy).close()
    with client(proxy) as http:
        assert http.get(f"http://localhost:{upstream_port}/json").status_code == 200


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "allow, message",
    [
        ("https://www.commcarehq.org", "is a URL; give the host name only"),
        ("", "the allow-list is empty"),
        ("www.commcarehq.org,,x.org", "empty entry"),
        ("www.commcarehq .org", "contains whitespace"),
        ("*", "wildcard"),
    ],
)
def test_the_cli_rejects_a_bad_allow_list(capsys, allow, message):
    assert main(["--allow", allow, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "data-explorer egress-proxy: error: argument --allow" in err and message in err


def test_the_cli_rejects_bad_ports_and_needs_an_allow_list(capsys):
    assert main(["--allow", "www.commcarehq.org", "--ports", "443,http"]) == 2
    assert "'http' is not a port number" in capsys.readouterr().err
    assert main([]) == 2
    assert "--allow" in capsys.readouterr().err


def test_the_cli_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: data-explorer egress-proxy") and "--allow-private" in out


def _read_stderr_until(proc: subprocess.Popen, needle: bytes, timeout: float) -> bytes:
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise AssertionError(f"no {needle!r} on stderr within {timeout} s: {seen!r}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"the proxy exited ({proc.wait()}): {seen!r}")
        seen += chunk
    return seen


def test_sigterm_stops_a_proxy_process_cleanly(upstream_port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "data_explorer.egress_proxy", "--host", "127.0.0.1", "--port", "0",
         "--allow", "localhost", "--ports", str(upstream_port), "--allow-private"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        seen = _read_stderr_until(proc, b"\n", 10)
        while b"listening on" not in seen:
            seen += _read_stderr_until(proc, b"\n", 10)
        port = int(seen.split(b"listening on 127.0.0.1:")[1].split(b";")[0])
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False, timeout=10) as http:
            response = http.get(f"http://localhost:{upstream_port}/json", headers={"Authorization": SECRET})
            refused = http.get("http://evil.example/")
        assert response.status_code == 200 and refused.status_code == 403
        seen += _read_stderr_until(proc, b"target=evil.example:80", 5)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as tunnel:  # open while it stops
            tunnel.sendall(f"CONNECT localhost:{upstream_port} HTTP/1.1\r\n\r\n".encode())
            assert _read_head(tunnel)[0].startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
            assert time.monotonic() - started < 3
            assert _read_all(tunnel) == b""  # closed, not left hanging
        seen += proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    log = seen.decode()
    assert f"target=localhost:{upstream_port} result=allowed" in log
    assert "target=evil.example:80 result=refused status=403" in log
    assert "egress proxy stopped" in log
    assert "secret-key" not in log
