"""The same seed gives the same bytes; another seed gives other data; nothing is stored per record."""

from __future__ import annotations

import httpx
from simulator_helpers import DOMAIN, api_key, small_config

from data_explorer.simulator import DomainConfig, RunningSimulator, SimulatorConfig, WebUser

PATHS = [
    (f"/a/{DOMAIN}/api/case/v2/", {"limit": 5000}),
    (f"/a/{DOMAIN}/api/case/v2/", {"limit": 50, "properties.risk_level": "low"}),
    (f"/a/{DOMAIN}/api/v0.5/form/", {"limit": 1000, "include_archived": "1"}),
    (f"/a/{DOMAIN}/api/v0.5/user/", {"extras": "true"}),
    (f"/a/{DOMAIN}/api/v0.5/application/", {}),
]


def _bodies(sim: RunningSimulator, mutate: bool = False) -> list[bytes]:
    if mutate:
        sim.mutate(DOMAIN, update_cases=20, new_cases=5, new_forms=8)
    with httpx.Client(base_url=sim.base_url, headers=api_key(), timeout=30) as client:
        return [client.get(path, params=params).content.replace(sim.base_url.encode(), b"BASE") for path, params in PATHS]


def test_two_simulators_with_one_seed_serve_identical_bytes():
    with RunningSimulator(small_config()) as one, RunningSimulator(small_config()) as two:
        assert _bodies(one) == _bodies(two)
        assert _bodies(one, mutate=True) == _bodies(two, mutate=True)


def test_another_seed_gives_other_data(sim):
    with RunningSimulator(small_config(seed=12)) as other:
        mine, theirs = _bodies(sim), _bodies(other)
    assert all(a != b for a, b in zip(mine[:4], theirs[:4]))


def test_a_large_space_costs_no_memory_up_front():
    config = SimulatorConfig(
        domains=(DomainConfig("big", cases=1_000_000, forms=1_000_000),),
        users=(WebUser("u@example.org", "k", ("big",)),),
    )
    with RunningSimulator(config) as big, httpx.Client(base_url=big.base_url, timeout=30,
                                                       headers={"Authorization": "ApiKey u@example.org:k"}) as client:
        body = client.get("/a/big/api/case/v2/", params={"limit": 3, "indexed_on.gte": "2024-07-01"}).json()
        assert body["matching_records"] < 1_000_000 and body["cases"][0]["indexed_on"] >= "2024-07-01"
        last = client.get("/a/big/api/v0.5/form/", params={"limit": 1}).json()
        assert last["meta"]["total_count"] == 1_000_000 - 1_000_000 // 53
        assert big.runtime.dataset.spaces["big"].cases.states == {}
