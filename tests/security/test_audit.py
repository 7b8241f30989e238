"""The audit log cannot be forged: rows go in only through audit_append, which fixes their id and time;
the table belongs to a NOLOGIN role that neither the audit login nor the admin is a member of."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.service_roles import audit_owner_name, ensure_audit_login
from data_explorer.warehouse.tenant_login import reader_conninfo

pytestmark = pytest.mark.security
CONTROL = "data_explorer"
APPEND = "SELECT data_explorer.audit_append('me', NULL, 'query', %s, 'ok', NULL, 1, false, 3, 'http')"


def test_the_audit_log_takes_rows_only_as_the_database_numbers_and_times_them(admin_url, session_tag, box):
    with psycopg.connect(admin_url, autocommit=True) as admin:
        superuser = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        prefix = session_tag if superuser else f"{session_tag}_cr"  # roles are the cluster's: one set per admin
        ensure_control_tables(admin, CONTROL)
        role, password = ensure_audit_login(admin, CONTROL, prefix, box)
        ensure_audit_login(admin, CONTROL, prefix, box)  # again: idempotent
        owner = audit_owner_name(prefix, CONTROL)
        assert admin.execute("SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'audit_log'",
                             (CONTROL,)).fetchone()[0] == owner
        assert not _acts_as(admin, owner, superuser)  # neither the admin nor any login can act as the owner
        with psycopg.connect(reader_conninfo(admin_url, role, password), autocommit=True) as audit:
            (row_id,) = audit.execute(APPEND, (Jsonb({"sql": "select 1"}),)).fetchone()
            for statement in (
                "INSERT INTO data_explorer.audit_log (id, at, principal, tool, arguments, status, duration_ms)"
                " VALUES (999999999, '2000-01-01', 'forged', 'query', '{}', 'ok', 0)",
                "UPDATE data_explorer.audit_log SET principal = 'forged'",
                "ALTER TABLE data_explorer.audit_log DISABLE TRIGGER USER",
                "SELECT setval('data_explorer.audit_log_id_seq', 999999999)",
                "CREATE OR REPLACE FUNCTION data_explorer.audit_append() RETURNS bigint LANGUAGE sql AS 'SELECT 1'",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    audit.execute(statement)
        at, principal = admin.execute("SELECT at, principal FROM data_explorer.audit_log WHERE id = %s",
                                      (row_id,)).fetchone()
        assert principal == "me" and abs((at - admin.execute("SELECT now()").fetchone()[0]).total_seconds()) < 60
        if not superuser:  # the admin the gateway logs in as cannot switch the triggers off or delete either
            for statement in ("ALTER TABLE data_explorer.audit_log DISABLE TRIGGER USER",
                              "ALTER TABLE data_explorer.audit_log OWNER TO CURRENT_USER"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    admin.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the trigger refuses even a superuser
            admin.execute(sql.SQL("DELETE FROM data_explorer.audit_log WHERE id = %s"), (row_id,))
        # an upgrade's migration still applies to the sealed objects, and leaves them sealed
        admin.execute("DELETE FROM data_explorer.control_version")
        ensure_control_tables(admin, CONTROL)
        assert admin.execute("SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'audit_log'",
                             (CONTROL,)).fetchone()[0] == owner
        assert not _acts_as(admin, owner, superuser)


def _acts_as(admin: psycopg.Connection, owner: str, superuser: bool) -> bool:
    """Whether any login other than a superuser may use the owner's privileges or become it."""
    pg16 = admin.info.server_version >= 160000
    able = "pg_has_role(u.oid, r.oid, 'USAGE')" + (" OR pg_has_role(u.oid, r.oid, 'SET')" if pg16 else "")
    return admin.execute(
        f"SELECT count(*) FROM pg_roles u, pg_roles r WHERE r.rolname = %s AND u.rolcanlogin AND NOT u.rolsuper"
        f" AND ({able})", (owner,)).fetchone()[0] > 0
