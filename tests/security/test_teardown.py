"""Teardown and the idle-expiry sweep's teardown work whatever kind of admin the installation has."""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from data_explorer.control.lifecycle import teardown
from data_explorer.pipelines.registry import Registry
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.naming import TenantNames
from data_explorer.warehouse.provisioning import provision_tenant
from data_explorer.warehouse.raw_tables import ensure_raw_tables

pytestmark = pytest.mark.security
CONTROL = "data_explorer"
PIPELINE = Registry.from_directory(Path(__file__).resolve().parents[2] / "pipelines").get("commcare_sync")


@pytest.mark.parametrize("expired", [False, True], ids=["teardown", "idle-expiry"])
def test_a_tenant_is_torn_down_to_nothing_by_either_kind_of_admin(admin_url, session_tag, box, expired):
    names = TenantNames.for_domain(f"td-{secrets.token_hex(3)}", session_tag, CONTROL)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        ensure_control_tables(conn, CONTROL)
        provision_tenant(conn, names, CONTROL, box)
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(names.writer_role)))
        ensure_raw_tables(conn, names.raw_schema, PIPELINE.raw_tables)
        conn.execute("RESET ROLE")
        assert teardown(conn, CONTROL, names, expired=expired)
        left = conn.execute(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)),"
            " (SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s)",
            (names.reader_role, names.writer_role, f"{names.schema}%"),
        ).fetchone()
        assert left == (0, 0)


def test_reader_sessions_carry_memory_and_temporary_file_limits(admin_url, session_tag, box, caplog):
    names = TenantNames.for_domain(f"rl-{secrets.token_hex(3)}", session_tag, CONTROL)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        ensure_control_tables(conn, CONTROL)
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        provision_tenant(conn, names, CONTROL, box)
        settings = conn.execute(
            "SELECT unnest(setconfig) FROM pg_db_role_setting WHERE setrole = %s::regrole", (names.reader_role,)
        ).fetchall()
        public, reader = conn.execute(  # PUBLIC's CONNECT and TEMP are gone from the admin's database
            "SELECT has_database_privilege('public', current_database(), 'CONNECT, TEMPORARY'),"
            " has_database_privilege(%s, current_database(), 'CONNECT')", (names.reader_role,)).fetchone()
        assert public is False and reader is True
        teardown(conn, CONTROL, names)
    settings = {s.split("=", 1)[0]: s.split("=", 1)[1] for (s,) in settings}
    assert settings["work_mem"] == "8MB" and settings["default_transaction_read_only"] == "on"
    if superuser:
        assert settings["temp_file_limit"] == "256MB"
    else:  # only a superuser may bound temporary files; the admin is told what to ask for
        assert "temp_file_limit" not in settings
        assert "GRANT SET ON PARAMETER temp_file_limit" in caplog.text
