"""Fixtures for end-to-end runs: a simulator over real HTTP, settings pointing at it, and
ways to look at what is published."""

from __future__ import annotations

import hashlib
import secrets

import psycopg
import pytest
from psycopg import sql

from data_explorer.pipelines.runner import RunRequest, materialize
from data_explorer.simulator import DEMO_API_KEY, DEMO_USER, RunningSimulator, demo_config
from data_explorer.warehouse.naming import TenantNames


class Space:
    """One simulated project space and the settings to materialize it."""

    def __init__(self, sim: RunningSimulator, domain: str, make_settings, db, session_tag: str):
        self.sim, self.domain, self.db = sim, domain, db
        self._make_settings = make_settings
        self.env = {
            "COMMCARE_BASE_URL": sim.base_url,
            "COMMCARE_USERNAME": DEMO_USER,
            "COMMCARE_API_KEY": DEMO_API_KEY,
        }
        self.names = TenantNames.for_domain(domain, session_tag)

    def settings(self, **env):
        return self._make_settings(**{**self.env, **env})

    def run(self, full: bool = False, reconcile: bool = False, **env):
        return materialize(self.settings(**env), self.db, RunRequest(self.domain, full=full, reconcile=reconcile))

    def expected(self) -> dict[str, int]:
        state = self.sim.state()["domains"][self.domain]
        users = state["users"] + state["users_archived"] + state["web_users"]  # active, deactivated, web
        return {"cases": state["cases"], "forms": state["forms"], "users": users}

    def count(self, conn: psycopg.Connection, table: str, schema: str | None = None) -> int:
        return conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema or self.names.schema), sql.Identifier(table))
        ).fetchone()[0]

    def published(self, conn: psycopg.Connection) -> dict[str, str]:
        """A fingerprint of every published relation: name -> md5 of its sorted rows."""
        relations = [
            r for (r,) in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'v') ORDER BY 1",
                (self.names.schema,),
            )
        ]
        out = {}
        for relation in relations:
            rows = conn.execute(
                sql.SQL("SELECT t::text FROM {}.{} AS t").format(sql.Identifier(self.names.schema), sql.Identifier(relation))
            ).fetchall()
            out[relation] = hashlib.md5("\n".join(sorted(r[0] for r in rows)).encode()).hexdigest()
        return out


@pytest.fixture
def space_factory(make_settings, db, session_tag):
    running = []

    def make(cases: int = 300, forms: int | None = None, users: int = 10, wrap=None, **config) -> Space:
        """``wrap`` (optional) wraps the simulator's ASGI app before it serves."""
        domain = f"sp-{secrets.token_hex(3)}"
        sim = RunningSimulator(demo_config(cases=cases, forms=forms, users=users, domains=(domain, f"{domain}-x"), **config))
        if wrap is not None:
            sim.app = wrap(sim.app)
        sim.start()
        running.append(sim)
        return Space(sim, domain, make_settings, db, session_tag)

    yield make
    for sim in running:
        sim.stop()


@pytest.fixture
def space(space_factory) -> Space:
    return space_factory()
