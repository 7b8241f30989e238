"""A project space's name never reaches a schema that is not the tenant's own: not PostgreSQL's, not the
product's, not one the database has for something else. Replayed with both kinds of admin."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from psycopg import sql

from data_explorer.pipelines.runner import RunRequest, materialize
from data_explorer.simulator import DEMO_API_KEY, DEMO_USER, RunningSimulator, demo_config
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.database import Database
from data_explorer.warehouse.naming import TenantNames, reserved, schema_for_domain
from data_explorer.warehouse.provisioning import TenantNameConflict, provision_tenant, teardown_tenant

pytestmark = pytest.mark.security
CONTROL = "data_explorer"


@pytest.mark.parametrize("domain, kept", [
    ("public", "public"), ("information-schema", "information_schema"), ("data-explorer", "data_explorer"),
    ("pg-catalog", "pg_catalog"), ("pg-toast", "pg_toast"),
])
def test_a_reserved_name_is_never_a_tenants_schema(domain, kept):
    schema = schema_for_domain(domain, CONTROL)
    assert schema != kept and not reserved(schema, CONTROL)
    assert schema_for_domain(domain, CONTROL) == schema  # and always the same one
    assert schema_for_domain("ctl", "ctl") != "ctl"  # whatever the control schema is called


def _schema_state(conn: psycopg.Connection, schema: str) -> tuple:
    """Owner, privileges and every object of a schema: what a run must leave alone."""
    owner, acl = conn.execute("SELECT nspowner::regrole::text, nspacl::text FROM pg_namespace WHERE nspname = %s",
                              (schema,)).fetchone()
    objects = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s UNION ALL SELECT p.proname, 'f' FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 1, 2", (schema, schema)
    ).fetchall()
    return owner, acl, objects


def test_materializing_spaces_named_like_system_schemas_leaves_those_schemas_alone(admin_url, make_settings):
    tag = secrets.token_hex(3)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE public.{} (x int)").format(sql.Identifier(f"keep_{tag}")))
        conn.execute(sql.SQL("CREATE FUNCTION public.{}() RETURNS int LANGUAGE sql AS 'SELECT 1'").format(
            sql.Identifier(f"keep_{tag}_fn")))
        ensure_control_tables(conn, CONTROL)
        before = {s: _schema_state(conn, s) for s in ("public", "information_schema", CONTROL)}
    try:
        for domain in ("public", "information-schema", "data-explorer"):
            with RunningSimulator(demo_config(cases=16, forms=16, users=2, domains=(domain,))) as sim:
                settings = make_settings(DATABASE_URL=admin_url, COMMCARE_BASE_URL=sim.base_url,
                                         COMMCARE_USERNAME=DEMO_USER, COMMCARE_API_KEY=DEMO_API_KEY)
                status = materialize(settings, Database(admin_url), RunRequest(domain))
                assert status.phase == "Succeeded", status.error
                names = TenantNames.for_domain(domain, settings.role_prefix, settings.control_schema)
                assert f"is kept in schema {names.schema!r}" in " ".join(status.phases["discover"]["warnings"])
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    stored = conn.execute(sql.SQL("SELECT count(*) FROM {}.cases").format(
                        sql.Identifier(names.schema))).fetchone()[0]
                    assert stored == 16  # the tenant has its data, in a schema of its own
                    teardown_tenant(conn, names, CONTROL)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            after = {s: _schema_state(conn, s) for s in before}
        assert after == before, "a run or a teardown changed a schema that is not the tenant's"
        assert after[CONTROL][2]  # the control schema still has its tables
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS public.{}").format(sql.Identifier(f"keep_{tag}")))
            conn.execute(sql.SQL("DROP FUNCTION IF EXISTS public.{}()").format(sql.Identifier(f"keep_{tag}_fn")))


def test_a_schema_the_database_has_for_something_else_is_refused_and_kept(admin_url, session_tag, box):
    domain = f"fx-{secrets.token_hex(3)}"
    names = TenantNames.for_domain(domain, session_tag, CONTROL)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        ensure_control_tables(conn, CONTROL)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(names.schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.t (x int)").format(sql.Identifier(names.schema)))
        before = _schema_state(conn, names.schema)
        with pytest.raises(TenantNameConflict, match="does not own; nothing was changed"):
            provision_tenant(conn, names, CONTROL, box)
        teardown_tenant(conn, names, CONTROL)  # a teardown of that space does not drop it either
        assert _schema_state(conn, names.schema) == before
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(names.schema)))
