"""Shared fixtures: a real PostgreSQL database per test session, and settings pointing at it.

PostgreSQL is always a real server: ``TEST_DATABASE_URL`` if set, else the
server on 127.0.0.1:5432 when one answers, else an embedded server (pgserver)
started for the session. ``TEST_DATABASE_URL=embedded`` asks for the embedded
server even when something answers on 5432, so either server can be chosen on
purpose (CI does, so that it depends on nothing already running). Each session
works in a database of its own and gives its roles a prefix of its own (roles
are cluster-wide), dropping both at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from data_explorer.config import load_settings

LOCAL_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
EMBEDDED = "embedded"  # the value of TEST_DATABASE_URL that asks for the embedded server


def _running_server() -> str | None:
    """TEST_DATABASE_URL, else the server on 127.0.0.1:5432 when one answers; None: start the embedded one."""
    explicit = os.environ.get("TEST_DATABASE_URL", "").strip()
    if explicit:
        return None if explicit == EMBEDDED else explicit
    try:
        psycopg.connect(LOCAL_SERVER).close()
        return LOCAL_SERVER
    except psycopg.OperationalError:
        return None


@contextmanager
def _embedded_server_directory():
    """A directory for an embedded server, removed afterwards. Not under pytest's temporary root:
    every pytest session that starts makes that root private again, and a server running as another
    user (pgserver's, under root) then loses its own directory mid-test."""
    directory = Path(tempfile.mkdtemp(prefix="data-explorer-test-pg-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def embedded_home():
    """DATA_EXPLORER_HOME for a test in which the product starts its own embedded server."""
    with _embedded_server_directory() as directory:
        yield directory / "home"


@pytest.fixture(scope="session")
def session_tag() -> str:
    return "t" + secrets.token_hex(3)


@pytest.fixture(scope="session")
def pg_server():
    dsn = _running_server()
    if dsn is not None:
        yield dsn
        return
    from data_explorer.warehouse.embedded import EmbeddedPostgres

    with _embedded_server_directory() as directory:
        server = EmbeddedPostgres(directory / "pg")
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture(scope="session")
def database_url(pg_server, session_tag):
    """A fresh database for this session, dropped (with the session's roles) at the end."""
    name = f"de_test_{session_tag}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(pg_server)
    params["dbname"] = name
    yield make_conninfo(**params)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"{session_tag}\\_%",)).fetchall()
        for (role,) in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def make_settings(database_url, session_tag, home):
    """Settings as the product reads them, from an environment mapping."""

    def make(**env):
        base = {
            "DATA_EXPLORER_HOME": str(home),
            "DATABASE_URL": database_url,
            "DATA_EXPLORER_ROLE_PREFIX": session_tag,
            "COMMCARE_MAX_BACKOFF": "0.05",
        }
        base.update({k: str(v) for k, v in env.items()})
        return load_settings(base)

    return make


@pytest.fixture
def db(database_url):
    from data_explorer.warehouse.database import Database

    return Database(database_url)


@pytest.fixture
def conn(db):
    with db.connect(autocommit=True) as connection:
        yield connection




@pytest.fixture
def box():
    from cryptography.fernet import Fernet

    from data_explorer.warehouse.secrets import SecretBox

    return SecretBox(Fernet.generate_key())
