"""The simulator in a child process, as in real use (client and server do not share one
interpreter lock). Shared by the benchmarks; one project space ``bench`` and the demo user."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import sys
from data_explorer.simulator import DomainConfig, SimulatorConfig, WebUser, serve
cases, forms, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
config = SimulatorConfig(
    domains=(DomainConfig("bench", cases=cases, forms=forms, users=50),),
    users=(WebUser("demo@example.org", "demo-api-key", ("bench",)),),
)
serve(config, "127.0.0.1", port)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(cases: int, forms: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(cases), str(forms), str(port)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/_sim/state", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.05)
        if process.poll() is not None:
            raise RuntimeError(f"simulator exited: {process.stderr.read().decode()[-2000:]}")
    process.kill()
    raise RuntimeError("simulator did not start in 30 s")
