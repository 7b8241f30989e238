"""Admins of both kinds the product must work under: a superuser (the embedded default) and a plain
role with CREATEROLE that owns its database (a managed PostgreSQL's usual grant)."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

pytestmark = pytest.mark.security


@pytest.fixture(scope="session")
def createrole_url(pg_server, database_url, session_tag):
    """A database owned by a login role that has CREATEROLE and nothing else."""
    role, name, password = f"{session_tag}_admin", f"de_test_{session_tag}_cr", secrets.token_urlsafe(16)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
    params = conninfo_to_dict(database_url)
    params.update(dbname=name, user=role, password=password)
    yield make_conninfo(**params)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        # what the admin granted (its tenants' roles to itself) goes with it; the session drops the roles
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))


@pytest.fixture(params=["superuser", "createrole"])
def admin_url(request, database_url):
    """The database URL of each kind of admin in turn."""
    return database_url if request.param == "superuser" else request.getfixturevalue("createrole_url")
