"""Running a simulator: in a background thread for tests and the demo, or in the foreground for the CLI.

    with RunningSimulator(demo_config(cases=500)) as sim:
        httpx.get(f"{sim.base_url}/a/demo/api/case/v2/", headers={"Authorization": sim.api_key_header()})
        sim.mutate("demo", update_cases=10)

The helpers (``mutate``, ``set_faults``, ...) run on the server's event loop,
so they never race with a request being served.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Callable

import uvicorn

from data_explorer.simulator import control
from data_explorer.simulator.asgi import DroppingH11Protocol
from data_explorer.simulator.config import DEMO_USER, FaultConfig, SimulatorConfig, WireBehaviour
from data_explorer.simulator.runtime import Runtime
from data_explorer.simulator.server import SimulatorApp

START_TIMEOUT = 15.0


def uvicorn_config(app: SimulatorApp, host: str, port: int, *, quiet: bool = True) -> uvicorn.Config:
    """uvicorn with the h11 protocol that can drop connections; no access log (it costs throughput)."""
    return uvicorn.Config(
        app, host=host, port=port, http=DroppingH11Protocol, lifespan="off", access_log=False,
        log_level="warning", log_config=None if quiet else uvicorn.config.LOGGING_CONFIG, timeout_keep_alive=30,
    )


class RunningSimulator:
    """A simulator serving on 127.0.0.1 (by default on a free port) from a daemon thread."""

    def __init__(self, config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0):
        self.config = config
        self.app = SimulatorApp(config)
        self.host, self.port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def runtime(self) -> Runtime:
        return self.app.runtime

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "RunningSimulator":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(self.app, self.host, self.port))
        self._thread = threading.Thread(target=self._run, args=(sock,), name=f"simulator:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the simulator did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start in time")
            time.sleep(0.01)
        return self

    def _run(self, sock: socket.socket) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[sock])

        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            sock.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.runtime.prefetch.close()
        self._server = self._thread = self._loop = None

    def __enter__(self) -> "RunningSimulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- helpers, run on the server's loop ----------------------------------------------------

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on the server's event loop, between requests; its result."""
        if self._loop is None:
            return function(*args)

        async def run() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=60)

    def mutate(self, domain: str, update_cases: int = 0, new_cases: int = 0, new_forms: int = 0,
               **changes: Any) -> dict[str, Any]:
        """A change of the space; ``changes`` are the other fields of ``Mutation`` (``delete_cases``,
        ``archive_form_ids``, ``late_by``, ``visible_after``, ...)."""
        request = {"domain": domain, "update_cases": update_cases, "new_cases": new_cases, "new_forms": new_forms,
                   **{k: list(v) if isinstance(v, (tuple, list)) else v for k, v in changes.items()}}
        return self.call(control.mutate_now, self.runtime, request)

    def set_behaviour(self, behaviour: WireBehaviour | dict[str, Any]) -> None:
        """Serve from now on as ``behaviour`` says (a ``WireBehaviour`` or its JSON form)."""
        config = behaviour if isinstance(behaviour, WireBehaviour) else WireBehaviour.from_json(behaviour)
        self.call(self.runtime.set_behaviour, config)

    @property
    def behaviour(self) -> WireBehaviour:
        return self.runtime.behaviour

    def set_faults(self, faults: FaultConfig | dict[str, Any]) -> None:
        config = faults if isinstance(faults, FaultConfig) else FaultConfig.from_json(faults)
        self.call(self.runtime.faults.set, config)

    def state(self) -> dict[str, Any]:
        return self.call(self.runtime.dataset.state)

    def stats(self) -> dict[str, Any]:
        return self.call(self.runtime.stats)

    def reset(self, tokens: bool = False) -> None:
        self.call(self.runtime.reset, tokens)

    def advance_clock(self, seconds: float) -> None:
        self.call(self.runtime.auth.advance, seconds)

    def api_key_header(self, username: str = DEMO_USER) -> str:
        """The ``Authorization`` header value of a configured user's API key."""
        user = next(u for u in self.config.users if u.username == username)
        return f"ApiKey {user.username}:{user.api_key}"


def serve(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve in the foreground until interrupted (Ctrl-C)."""
    app = SimulatorApp(config)
    try:
        uvicorn.Server(uvicorn_config(app, host, port, quiet=False)).run()
    finally:
        app.runtime.prefetch.close()
