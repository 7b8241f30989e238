"""Which PostgreSQL to use, and connections to it.

With ``DATABASE_URL`` that server is used; without it the embedded server in
the data directory starts (or is attached to).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from data_explorer.config import Settings
from data_explorer.warehouse.embedded import EmbeddedPostgres


class DatabaseUnavailable(RuntimeError):
    pass


def redact_dsn(dsn: str) -> str:
    """A DSN fit for messages: the password removed."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparseable DSN)"
    params.pop("password", None)
    return make_conninfo(**params)


@dataclass(frozen=True)
class Database:
    dsn: str
    embedded: bool = False

    def connect(self, *, autocommit: bool = False, **kwargs) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, autocommit=autocommit, **kwargs)
        except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
            where = "the embedded PostgreSQL" if self.embedded else f"DATABASE_URL ({redact_dsn(self.dsn)})"
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(
                f"Cannot connect to {where}: {reason}. Check that the server runs and the URL is right."
            ) from None

    def params(self) -> dict[str, str]:
        """host, port, user, password and dbname, as libpq resolves them (for dbt profiles)."""
        params = conninfo_to_dict(self.dsn)
        with self.connect(autocommit=True) as conn:
            info = conn.info
            return {
                "host": info.host,
                "port": str(info.port),
                "user": info.user,
                "password": params.get("password") or info.password or "",
                "dbname": info.dbname,
                "sslmode": params.get("sslmode", "prefer"),
            }


@contextlib.contextmanager
def open_database(settings: Settings, *, owner: bool = True) -> Iterator[Database]:
    """The configured database for the duration of the block.

    ``owner=False`` is for child processes: they attach to an embedded server
    that their parent started and never stop it.
    """
    if settings.database_url:
        db = Database(settings.database_url)
        db.connect(autocommit=True).close()  # fail now, with a clear message, not mid-run
        yield db
        return
    server = EmbeddedPostgres(settings.home / "postgres", owner=owner)
    dsn = server.start()
    try:
        yield Database(dsn, embedded=True)
    finally:
        if owner:
            server.stop()
