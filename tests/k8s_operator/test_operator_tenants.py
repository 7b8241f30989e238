"""TenantSchema: provisioning, status, bad specs, TTL expiry, deletionPolicy."""

from __future__ import annotations

import pytest
from psycopg import sql

from data_explorer.warehouse.naming import TenantNames

from .conftest import TENANT_SCHEMAS, tenant_body
from .operator_helpers import new_domain, role_exists, schema_exists

pytestmark = pytest.mark.asyncio


def _phase(phase):
    return lambda obj: obj is not None and (obj.get("status") or {}).get("phase") == phase


async def test_a_tenant_schema_is_provisioned_and_reports_ready(cluster, operator, conn, session_tag):
    domain = new_domain()
    await cluster.create(TENANT_SCHEMAS, tenant_body("clinic", domain))
    obj = await cluster.wait_for(TENANT_SCHEMAS, "clinic", _phase("Active"))
    names = TenantNames.for_domain(domain, session_tag)
    status = obj["status"]
    assert status["schema"] == names.schema and status["readerRole"] == names.reader_role
    assert status["observedGeneration"] == 1
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["lastTransitionTime"]
    assert schema_exists(conn, names.raw_schema)  # the published schema appears with the first run
    assert role_exists(conn, names.reader_role) and role_exists(conn, names.writer_role)
    assert "dataexplorer.io/cleanup" in obj["metadata"].get("finalizers", [])
    events = await cluster.events_for("clinic")
    assert any(e.get("reason") == "TenantActive" for e in events), events


@pytest.mark.parametrize("spec, reason, words", [
    ({"tenant": "has spaces"}, "InvalidSpec", "spec.tenant"),
    ({"provider": "kobo"}, "InvalidSpec", "provider"),
    ({"ttl": "soon"}, "InvalidSpec", "spec.ttl"),
])
async def test_a_bad_tenant_spec_fails_with_the_reason(cluster, operator, spec, reason, words):
    body = tenant_body("bad", new_domain())
    body["spec"].update(spec)
    await cluster.create(TENANT_SCHEMAS, body)
    obj = await cluster.wait_for(TENANT_SCHEMAS, "bad", _phase("Failed"))
    ready = obj["status"]["conditions"][0]
    assert ready["status"] == "False" and ready["reason"] == reason
    assert words in obj["status"]["message"]


async def test_a_second_tenant_schema_for_the_same_domain_is_refused(cluster, operator):
    domain = new_domain()
    await cluster.create(TENANT_SCHEMAS, tenant_body("first", domain))
    await cluster.wait_for(TENANT_SCHEMAS, "first", _phase("Active"))
    second = tenant_body("second", domain)
    second["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    await cluster.create(TENANT_SCHEMAS, second)
    obj = await cluster.wait_for(TENANT_SCHEMAS, "second", _phase("Failed"))
    assert obj["status"]["conditions"][0]["reason"] == "TenantClaimed" and "first" in obj["status"]["message"]


@pytest.mark.parametrize("policy, kept", [("Retain", True), ("Delete", False)])
async def test_deletion_follows_the_deletion_policy(cluster, operator, conn, session_tag, policy, kept):
    domain = new_domain()
    await cluster.create(TENANT_SCHEMAS, tenant_body("gone", domain, deletionPolicy=policy))
    await cluster.wait_for(TENANT_SCHEMAS, "gone", _phase("Active"))
    names = TenantNames.for_domain(domain, session_tag)
    await cluster.delete(TENANT_SCHEMAS, "gone")
    await cluster.wait_for(TENANT_SCHEMAS, "gone", lambda obj: obj is None, what="the finalizer to let go")
    assert schema_exists(conn, names.raw_schema) is kept
    assert role_exists(conn, names.reader_role) is kept


async def test_an_idle_schema_expires_after_its_ttl(cluster, operator, conn, session_tag, operator_settings):
    domain = new_domain()
    await cluster.create(TENANT_SCHEMAS, tenant_body("idle", domain, ttl="1h"))
    await cluster.wait_for(TENANT_SCHEMAS, "idle", _phase("Active"))
    control = operator_settings.control_schema
    conn.execute(  # two hours of idleness, without waiting for them
        sql.SQL("UPDATE {}.tenants SET created_at = now() - interval '2 hours', last_used_at = NULL,"
                " last_materialized_at = NULL WHERE domain = %s").format(sql.Identifier(control)), (domain,))
    obj = await cluster.wait_for(TENANT_SCHEMAS, "idle", _phase("Expired"), timeout=15)
    assert "idle" in obj["status"]["message"]
    names = TenantNames.for_domain(domain, session_tag)
    assert not schema_exists(conn, names.raw_schema) and not role_exists(conn, names.reader_role)
