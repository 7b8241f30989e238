"""Fixtures for the authentication tests: simulators over real HTTP, settings pointing at them, a fake clock."""

from __future__ import annotations

import socket

import pytest

from auth_helpers import DOMAINS

from data_explorer.simulator import RunningSimulator, demo_config


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def sim():
    """A simulator of its own per test: its request counts, faults and token clock are the test's."""
    with RunningSimulator(demo_config(cases=16, users=2, domains=DOMAINS)) as running:
        yield running


@pytest.fixture
def settings_for(make_settings):
    def make(sim_or_url, **env):
        url = sim_or_url if isinstance(sim_or_url, str) else sim_or_url.base_url
        return make_settings(COMMCARE_BASE_URL=url, **env)

    return make


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def closed_url() -> str:
    """An http URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
