"""Configuration and helpers shared by the simulator tests."""

from __future__ import annotations

import httpx

from data_explorer.simulator import (
    DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER, DomainConfig, SimulatorConfig, WebUser,
)

DOMAIN = "demo"
CASES = 403  # not a multiple of 4 or 8: partial groups and families at the end
FORMS = 350


def small_config(**overrides) -> SimulatorConfig:
    values = dict(
        domains=(
            DomainConfig(DOMAIN, cases=CASES, forms=FORMS, users=19, deactivated_users=1, web_users=2,
                         deprecated_case_types=("visit",)),
            DomainConfig("demo-other", cases=40),
            DomainConfig("empty-space", cases=0),
        ),
        users=(
            WebUser(DEMO_USER, DEMO_API_KEY, (DOMAIN, "empty-space"), "Demo", "Usér"),
            WebUser(OTHER_USER, OTHER_API_KEY, ("demo-other",), "Other", "Person"),
        ),
        seed=11,
    )
    values.update(overrides)
    return SimulatorConfig(**values)


def api_key(username: str = DEMO_USER, key: str = DEMO_API_KEY) -> dict[str, str]:
    return {"Authorization": f"ApiKey {username}:{key}"}


def all_cases(client: httpx.Client, params: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Every case of a query by following ``next``; (cases, pages as returned)."""
    url, query = f"/a/{DOMAIN}/api/case/v2/", dict(params or {})
    cases, pages = [], []
    while True:
        response = client.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        cases += body["cases"]
        if "next" not in body:
            return cases, pages
        url, query = body["next"], None
