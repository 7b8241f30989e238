"""Small helpers shared by the authentication tests."""

from __future__ import annotations

import httpx

from data_explorer.simulator import DEMO_API_KEY, DEMO_USER, OTHER_API_KEY, OTHER_USER

DOMAINS = ("auth-a", "auth-b", "auth-c")  # demo@ belongs to auth-a, other@ to auth-b and auth-c


def api_key(user: str = DEMO_USER) -> str:
    return f"ApiKey {user}:{DEMO_API_KEY if user == DEMO_USER else OTHER_API_KEY}"


def oauth_tokens(sim, user: str = DEMO_USER, client_id: str = "explorer") -> dict:
    """Tokens from the simulator's password grant (the password is the API key)."""
    password = DEMO_API_KEY if user == DEMO_USER else OTHER_API_KEY
    response = httpx.post(f"{sim.base_url}/oauth/token/", timeout=30,
                          data={"grant_type": "password", "username": user, "password": password, "client_id": client_id})
    response.raise_for_status()
    return response.json()


def count(sim, endpoint: str, status: str | None = None) -> int:
    """Requests the simulator served for an endpoint (identity, user_domains, oauth_token, cases...)."""
    by_status = sim.stats()["requests"].get(endpoint, {})
    return by_status.get(status, 0) if status else sum(by_status.values())


__all__ = ["DOMAINS", "api_key", "oauth_tokens", "count", "DEMO_USER", "OTHER_USER", "DEMO_API_KEY", "OTHER_API_KEY"]
