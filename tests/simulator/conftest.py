"""Simulators over real HTTP for the simulator's own tests."""

from __future__ import annotations

import httpx
import pytest
from simulator_helpers import api_key, small_config

from data_explorer.simulator import RunningSimulator


@pytest.fixture(scope="session")
def sim():
    """A read-only simulator shared by the tests that do not change data or faults."""
    with RunningSimulator(small_config()) as running:
        yield running


@pytest.fixture
def fresh_sim():
    """A simulator of its own, for tests that mutate data or inject faults."""
    with RunningSimulator(small_config()) as running:
        yield running


@pytest.fixture
def client(sim):
    with httpx.Client(base_url=sim.base_url, headers=api_key(), timeout=30) as c:
        yield c
