"""Provision and tear down a tenant: its schemas, its reader and writer roles, its row in the control tables.

The same functions serve the embedded mode (called in-line) and the operator.
All identifiers are quoted with ``sql.Identifier``; nothing derived from a
domain is ever formatted into SQL text.
"""

from __future__ import annotations

import logging
import secrets

import psycopg
from psycopg import sql

from data_explorer.warehouse.catalog import schema_owners
from data_explorer.warehouse.naming import TenantNames
from data_explorer.warehouse.secrets import SecretBox

READER_CONNECTION_LIMIT = 20  # per tenant: a burst of agent queries cannot exhaust the server
READER_DEFAULTS = (
    ("default_transaction_read_only", "on"),
    ("statement_timeout", "60s"),
    ("idle_in_transaction_session_timeout", "60s"),
    ("work_mem", "8MB"),  # per sort or hash of a query: a burst of agent queries cannot take the server's memory
)
# Settings only a superuser (or a role granted SET on them) may fix for a role.
READER_GUARDED_DEFAULTS = (
    ("temp_file_limit", "256MB"),  # one query's temporary files: a sort of everything cannot fill the disk
)

log = logging.getLogger(__name__)
_ROLE_LOCK = 0x6465_0002  # roles are cluster-wide: serialise their creation


class TenantNameConflict(RuntimeError):
    code = "CONFLICT"

    pass


def _tenant_schemas(names: TenantNames) -> tuple[str, ...]:
    return (names.schema, names.build_schema, names.old_schema, names.raw_schema)


def foreign_schemas(conn: psycopg.Connection, names: TenantNames) -> dict[str, str]:
    """The tenant's schema names that exist but belong to another role than its writer: schemas the
    database has for something else (an extension's, an application's), never the tenant's to replace."""
    return {s: owner for s, owner in schema_owners(conn, _tenant_schemas(names)).items() if owner != names.writer_role}


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None



def _reader_password(conn: psycopg.Connection, names: TenantNames, box: SecretBox) -> tuple[sql.Composable, str]:
    """A new password for the reader login, hashed by libpq so the plain text never reaches the server."""
    password = secrets.token_urlsafe(32)
    hashed = conn.pgconn.encrypt_password(password.encode(), names.reader_role.encode(), b"scram-sha-256")
    return sql.Literal(hashed.decode()), box.encrypt(password)


def provision_tenant(conn: psycopg.Connection, names: TenantNames, control_schema: str, box: SecretBox) -> None:
    """Create the tenant's roles and private schema and register it; idempotent.

    The reader is a LOGIN role of its own, a member of nothing: queries run in
    sessions logged in as it, which therefore cannot become any other role.
    Its password is kept encrypted in the control schema."""
    ident = sql.Identifier
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLE_LOCK,))
        owner = conn.execute(
            sql.SQL("SELECT domain, reader_role, writer_role FROM {}.tenants WHERE schema_name = %s").format(
                ident(control_schema)
            ),
            (names.schema,),
        ).fetchone()
        if owner and owner[0] != names.domain:
            raise TenantNameConflict(
                f"Project space {names.domain!r} maps to schema {names.schema!r}, "
                f"which project space {owner[0]!r} already uses. Tear that tenant down first."
            )
        if owner and (owner[1], owner[2]) != (names.reader_role, names.writer_role):
            raise TenantNameConflict(
                f"Project space {names.domain!r} was provisioned with roles {owner[1]!r} and {owner[2]!r}, "
                f"but DATA_EXPLORER_ROLE_PREFIX now makes them {names.reader_role!r} and {names.writer_role!r}. "
                "Set the prefix back, or tear the tenant down and materialize it again."
            )
        foreign = foreign_schemas(conn, names)
        if foreign:
            taken = ", ".join(f"{schema!r} (owned by {role})" for schema, role in sorted(foreign.items()))
            raise TenantNameConflict(
                f"Project space {names.domain!r} maps to schema {names.schema!r}, but the database already has "
                f"{taken}, which this tenant does not own; nothing was changed. Rename or drop that schema, or "
                "use another database for Data Explorer."
            )
        if not _role_exists(conn, names.writer_role):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(names.writer_role)))
        stored = conn.execute(
            sql.SQL("SELECT reader_secret FROM {}.tenants WHERE domain = %s").format(ident(control_schema)), (names.domain,)
        ).fetchone()
        reader_secret = stored[0] if stored else None
        if not _role_exists(conn, names.reader_role) or reader_secret is None:
            hashed, reader_secret = _reader_password(conn, names, box)
            verb = "ALTER" if _role_exists(conn, names.reader_role) else "CREATE"
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN NOINHERIT CONNECTION LIMIT {} PASSWORD {}").format(
                    sql.SQL(verb), ident(names.reader_role), sql.Literal(READER_CONNECTION_LIMIT), hashed
                )
            )
        _set_reader_defaults(conn, names.reader_role)
        close_database_to_public(conn)
        grant_connect(conn, names.reader_role)
        grant_connect(conn, names.writer_role, "TEMPORARY")  # the runner's COPY stages are temporary tables
        # The login role acts as the writer while loading and must be able to
        # rename the writer's schemas when publishing.
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident(names.writer_role)))
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                ident(names.raw_schema), ident(names.writer_role)
            )
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.tenants (domain, schema_name, reader_role, writer_role, phase, reader_secret) "
                "VALUES (%s, %s, %s, %s, 'Active', %s) "
                "ON CONFLICT (domain) DO UPDATE SET updated_at = now(), reader_secret = EXCLUDED.reader_secret, "
                "phase = CASE WHEN tenants.phase IN ('Pending', 'Provisioning', 'Expired') "
                "THEN 'Active' ELSE tenants.phase END"
            ).format(ident(control_schema)),
            (names.domain, names.schema, names.reader_role, names.writer_role, reader_secret),
        )


def grant_connect(conn: psycopg.Connection, role: str, privileges: str = "CONNECT") -> None:
    """Grant ``privileges`` on the current database: CONNECT to a login, TEMPORARY to the writer (its stages)."""
    conn.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
        sql.SQL(privileges), sql.Identifier(conn.info.dbname), sql.Identifier(role)))


def close_database_to_public(conn: psycopg.Connection) -> None:
    """Take PostgreSQL's default CONNECT and TEMP from PUBLIC on a database the admin owns (the embedded
    one included), so that only the roles the product grants them to may log in. A database someone
    else owns is theirs to configure."""
    owned = conn.execute(
        "SELECT datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) FROM pg_database"
        " WHERE datname = current_database()"
    ).fetchone()[0]
    if owned:
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(conn.info.dbname)))


def _set_reader_defaults(conn: psycopg.Connection, reader: str) -> None:
    """Defaults of every session the reader opens: a second line behind the query path's own settings.
    Set on every provisioning, so readers made before a default was added get it too."""
    ident = sql.Identifier
    for setting, value in READER_DEFAULTS:
        conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(ident(reader), ident(setting), sql.Literal(value)))
    for setting, value in READER_GUARDED_DEFAULTS:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(ident(reader), ident(setting), sql.Literal(value)))
        except psycopg.errors.InsufficientPrivilege:
            log.warning(
                "could not set %s for %s: the database admin is not a superuser. Have a superuser run "
                "GRANT SET ON PARAMETER %s TO <the admin role>, or queries' temporary files stay unbounded",
                setting, reader, setting,
            )


def teardown_tenant(conn: psycopg.Connection, names: TenantNames, control_schema: str) -> bool:
    """Drop the tenant's schemas and roles; keep its metadata and run history. True if anything existed."""
    ident = sql.Identifier
    existed = False
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLE_LOCK,))
        owners = schema_owners(conn, _tenant_schemas(names))
        for schema in _tenant_schemas(names):
            if owners.get(schema) == names.writer_role:  # another's schema is never the tenant's to drop
                existed = True
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident(schema)))
        for role in (names.reader_role, names.writer_role):
            if _role_exists(conn, role):
                existed = True
                # DROP OWNED BY needs the role's privileges: an admin that is not a superuser gets them by
                # membership, which CREATEROLE lets it grant itself on a role it manages
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident(role)))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(ident(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(ident(role)))
        conn.execute(
            sql.SQL("DELETE FROM {}.tenants WHERE domain = %s").format(ident(control_schema)), (names.domain,)
        )
    return existed
