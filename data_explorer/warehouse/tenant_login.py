"""Connection details of a tenant's reader login, for the query path."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from data_explorer.warehouse.secrets import SecretBox


def reader_conninfo(admin_dsn: str, role: str, password: str) -> str:
    """The admin DSN's server and database, logged in as the reader instead."""
    params = conninfo_to_dict(admin_dsn)
    params.update(user=role, password=password)
    params.pop("options", None)  # nothing of the admin session's settings carries over
    return make_conninfo(**params)


def reader_login(conn: psycopg.Connection, control_schema: str, domain: str, box: SecretBox) -> tuple[str, str, str] | None:
    """(schema, reader role, password) of a provisioned tenant, or None."""
    row = conn.execute(
        sql.SQL("SELECT schema_name, reader_role, reader_secret FROM {}.tenants WHERE domain = %s").format(
            sql.Identifier(control_schema)
        ),
        (domain,),
    ).fetchone()
    if row is None or row[2] is None:
        return None
    return row[0], row[1], box.decrypt(row[2])
