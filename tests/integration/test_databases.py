"""Both database paths: the embedded server in the data directory, and DATABASE_URL."""

from __future__ import annotations

import subprocess
import sys

import pytest

from data_explorer.config import load_settings
from data_explorer.warehouse.database import DatabaseUnavailable, open_database


@pytest.mark.embedded
def test_embedded_server_starts_in_the_data_directory_is_reused_and_stops(embedded_home):
    settings = load_settings({"DATA_EXPLORER_HOME": str(embedded_home)})
    with open_database(settings) as db:
        assert db.embedded
        with db.connect(autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
        # a child process attaches to the same server without owning it
        child = subprocess.run(
            [sys.executable, "-c", (
                "from data_explorer.config import load_settings\n"
                "from data_explorer.warehouse.database import open_database\n"
                f"s = load_settings({{'DATA_EXPLORER_HOME': {str(embedded_home)!r}}})\n"
                "with open_database(s, owner=False) as db:\n"
                "    with db.connect() as c: print(c.execute('SELECT v FROM kept').fetchone()[0])\n"
            )],
            capture_output=True, text=True, timeout=120,
        )
        assert child.stdout.strip() == "still here", child.stderr
        with db.connect(autocommit=True) as conn:  # the child leaving did not stop it
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (1,)
    pgdata = embedded_home / "postgres"
    assert (pgdata / "PG_VERSION").exists()
    assert not (pgdata / "postmaster.pid").exists(), "the server should have stopped with its owner"
    with open_database(settings) as db:  # reused, data intact
        with db.connect() as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == ("still here",)


def test_database_url_is_used_when_set(make_settings, database_url):
    settings = make_settings()
    with open_database(settings) as db:
        assert not db.embedded
        with db.connect() as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == database_url.split("dbname=")[1].split()[0]
    assert not (settings.home / "postgres").exists()


def test_an_unreachable_database_url_fails_with_a_clear_message(tmp_path):
    settings = load_settings({"DATA_EXPLORER_HOME": str(tmp_path), "DATABASE_URL": "postgresql://me:s3cret@127.0.0.1:1/nope?connect_timeout=2"})
    with pytest.raises(DatabaseUnavailable) as err:
        with open_database(settings):
            pass
    message = str(err.value)
    assert "DATABASE_URL" in message and "127.0.0.1" in message and "s3cret" not in message
