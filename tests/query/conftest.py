"""Two provisioned tenants with data (A and B), for the query path's tests.

Each tenant is provisioned as the product does it (``provision_tenant``: a
writer that owns the schemas, a reader LOGIN role that is a member of nothing),
and its published schema is made the way ``publish`` leaves it: owned by the
writer, USAGE and SELECT granted to the reader. Every row of a tenant carries a
marker, so a test can tell whether anything of the other tenant, of a private
``__raw`` schema or of the control schema ever reached a result.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg import sql

from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.naming import TenantNames
from data_explorer.warehouse.provisioning import provision_tenant, teardown_tenant
from data_explorer.warehouse.query import TenantLogin
from data_explorer.warehouse.secrets import SecretBox
from data_explorer.warehouse.tenant_login import reader_login

CONTROL = "data_explorer"
TABLES = ("cases", "forms", "users", "odd_values")

_TABLES_DDL = """
CREATE TABLE {s}.cases (
    case_id uuid PRIMARY KEY, case_type text NOT NULL, owner_id text, name text, opened_on timestamptz,
    closed boolean, properties jsonb, amount numeric(10, 2), visits integer, score double precision,
    birth_date date, tags text[], photo bytea, note text
);
INSERT INTO {s}.cases
SELECT md5({m} || i)::uuid, (ARRAY['household', 'patient', 'visit'])[1 + i % 3], 'owner-' || (i % 7), 'Case ' || i,
       timestamptz '2024-01-01 00:00:00+00' + interval '13 hours' * i, i % 4 = 0,
       jsonb_build_object('village', 'v' || (i % 5), 'status', CASE WHEN i % 2 = 0 THEN 'active' ELSE 'inactive' END,
                          'household', jsonb_build_object('size', i % 6)),
       (i * 1.25)::numeric(10, 2), i % 9, i / 7.0, date '1990-01-01' + i * 30, ARRAY['t' || (i % 3), 'x'],
       decode(lpad(to_hex(i), 4, '0'), 'hex'), {m}
FROM generate_series(1, 200) AS i;
CREATE TABLE {s}.forms (form_id text PRIMARY KEY, case_id uuid, xmlns text, received_on timestamptz, form jsonb);
INSERT INTO {s}.forms
SELECT 'f-' || i, md5({m} || (i % 150 + 1))::uuid, 'http://openrosa.org/formdesigner/' || (i % 4),
       timestamptz '2024-02-01 00:00:00+00' + interval '7 hours' * i, jsonb_build_object('q1', i, 'note', {m})
FROM generate_series(1, 300) AS i;
CREATE TABLE {s}.users (user_id text PRIMARY KEY, username text, "First Name" text, is_active boolean);
INSERT INTO {s}.users SELECT 'u-' || i, 'user' || i || '@example.org', 'Name ' || i, i % 2 = 0 FROM generate_series(1, 5) AS i;
CREATE TABLE {s}.odd_values (
    id integer PRIMARY KEY, ts timestamptz, d date, n numeric, f double precision, iv interval, u uuid, b bytea,
    j jsonb, arr integer[], ip inet, t time, big numeric, tiny numeric
);
INSERT INTO {s}.odd_values VALUES
    (1, 'infinity', '-infinity', 'NaN', 'Infinity', '1 mon 2 days 03:04:05', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '\\xdeadbeef', '{{"a": [1, 2.5, null], "b": {{"c": "d"}}}}', '{{1,2,NULL}}', '10.0.0.1', '24:00:00',
     12345678901234567890.5, 0.1),
    (2, '2024-05-01 10:00:00+00', '2024-05-01', 42.00, -0.5, '-3 hours', NULL, '', 'null', '{{}}', NULL, '12:30:00',
     -7, 1e-20),
    (3, NULL, NULL, NULL, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE {raw}.cases_raw (id integer PRIMARY KEY, payload text);
INSERT INTO {raw}.cases_raw SELECT i, {rm} FROM generate_series(1, 10) AS i;
"""


@dataclass(frozen=True)
class QueryTenant:
    names: TenantNames
    login: TenantLogin
    marker: str  # in every row of the tenant's published tables
    raw_marker: str  # in its private __raw schema


@dataclass(frozen=True)
class QueryWorld:
    dsn: str
    control: str
    a: QueryTenant
    b: QueryTenant
    control_marker: str  # in the control schema (runs, tenant_metadata)

    def placeholders(self) -> dict[str, str]:
        """Names for the hostile corpus, from tenant A's point of view."""
        return {
            "own": self.a.names.schema,
            "own_raw": self.a.names.raw_schema,
            "own_build": self.a.names.build_schema,
            "own_reader": self.a.names.reader_role,
            "own_writer": self.a.names.writer_role,
            "other": self.b.names.schema,
            "other_upper": self.b.names.schema.upper(),
            "other_raw": self.b.names.raw_schema,
            "other_reader": self.b.names.reader_role,
            "other_writer": self.b.names.writer_role,
            "control": self.control,
        }

    def secrets_of_others(self) -> list[str]:
        """Strings that must never appear in a result of tenant A."""
        return [self.b.marker, self.a.raw_marker, self.b.raw_marker, self.control_marker]


def _make_tenant(conn: psycopg.Connection, domain: str, prefix: str, box: SecretBox) -> QueryTenant:
    names = TenantNames.for_domain(domain, prefix)
    provision_tenant(conn, names, CONTROL, box)
    marker = f"secret-{names.schema}-{secrets.token_hex(4)}"
    raw_marker = f"raw-{names.schema}-{secrets.token_hex(4)}"
    ident = sql.Identifier
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(ident(names.schema), ident(names.writer_role)))
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(ident(names.writer_role)))
        conn.execute(
            sql.SQL(_TABLES_DDL).format(
                s=ident(names.schema), raw=ident(names.raw_schema), m=sql.Literal(marker), rm=sql.Literal(raw_marker)
            )
        )
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(names.schema), ident(names.reader_role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(ident(names.schema), ident(names.reader_role))
        )
    schema, role, password = reader_login(conn, CONTROL, domain, box)
    return QueryTenant(names, TenantLogin(domain, schema, role, password), marker, raw_marker)


@pytest.fixture(scope="session")
def query_world(database_url, session_tag):
    box = SecretBox(Fernet.generate_key())
    tag = secrets.token_hex(3)
    control_marker = f"control-{tag}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        ensure_control_tables(conn, CONTROL)
        a = _make_tenant(conn, f"q-{tag}-a", session_tag, box)
        b = _make_tenant(conn, f"q-{tag}-b", session_tag, box)
        conn.execute(
            sql.SQL("INSERT INTO {}.tenant_metadata (domain, provider, metadata) VALUES (%s, 'commcare', %s)").format(
                sql.Identifier(CONTROL)
            ),
            (a.login.domain, psycopg.types.json.Jsonb({"marker": control_marker})),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.runs (run_id, domain, pipeline, mode, phase, error) "
                "VALUES (gen_random_uuid(), %s, 'commcare', 'full', 'Failed', %s)"
            ).format(sql.Identifier(CONTROL)),
            (a.login.domain, psycopg.types.json.Jsonb({"message": control_marker})),
        )
    world = QueryWorld(database_url, CONTROL, a, b, control_marker)
    yield world
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN (%s, %s)",
            (a.login.role, b.login.role),
        )
        for domain in (a.login.domain, b.login.domain):
            for table in ("runs", "tenant_metadata"):
                conn.execute(
                    sql.SQL("DELETE FROM {}.{} WHERE domain = %s").format(sql.Identifier(CONTROL), sql.Identifier(table)),
                    (domain,),
                )
        for tenant in (a, b):
            teardown_tenant(conn, tenant.names, CONTROL)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def admin(query_world):
    with psycopg.connect(query_world.dsn, autocommit=True) as conn:
        yield conn


def fingerprint(conn: psycopg.Connection, world: QueryWorld) -> dict[str, str]:
    """A checksum of every table the query path must leave alone, plus the roles and grants."""
    out: dict[str, str] = {}
    targets = [(t.names.schema, table) for t in (world.a, world.b) for table in TABLES]
    targets += [(t.names.raw_schema, "cases_raw") for t in (world.a, world.b)]
    targets += [(world.control, table) for table in ("tenants", "runs", "tenant_metadata", "audit_log", "run_credentials")]
    for schema, table in targets:
        (out[f"{schema}.{table}"],) = conn.execute(
            sql.SQL("SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {}.{} AS t").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        ).fetchone()
    roles = [r for t in (world.a, world.b) for r in (t.names.reader_role, t.names.writer_role)]
    (out["roles"],) = conn.execute(
        "SELECT md5(string_agg(a::text, '|' ORDER BY a.rolname)) FROM pg_authid a WHERE rolname = ANY(%s)", (roles,)
    ).fetchone()
    (out["memberships"],) = conn.execute(
        "SELECT md5(coalesce(string_agg(m::text, '|' ORDER BY m::text), '')) FROM pg_auth_members m "
        "WHERE member = ANY(SELECT oid FROM pg_roles WHERE rolname = ANY(%s))",
        (roles,),
    ).fetchone()
    schemas = [s for t in (world.a, world.b) for s in (t.names.schema, t.names.raw_schema)] + [world.control]
    (out["objects"],) = conn.execute(
        "SELECT md5(string_agg(n.nspname || '.' || c.relname || ':' || coalesce(c.relacl::text, ''), '|' "
        "ORDER BY n.nspname, c.relname)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s)",
        (schemas,),
    ).fetchone()
    (out["schemas"],) = conn.execute(
        "SELECT md5(string_agg(nspname || ':' || coalesce(nspacl::text, ''), '|' ORDER BY nspname)) FROM pg_namespace"
    ).fetchone()
    return out
