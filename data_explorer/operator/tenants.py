"""TenantSchema reconciliation: provision the tenant's schema and roles (the code embedded
mode uses), report phase and conditions, expire idle schemas, honour deletionPolicy.

PostgreSQL's control tables stay the record of what exists (the gateway reads
them in both modes); the resource's status mirrors them.
"""

from __future__ import annotations

import logging
from typing import Any

from data_explorer.control.base import Conflict
from data_explorer.control.lifecycle import teardown
from data_explorer.kube.resources import MATERIALIZATION_RUNS, TENANT_SCHEMAS
from data_explorer.operator.builders import SpecError, parse_ttl, run_in_progress, tenant_domain
from data_explorer.kube.run_status import api_time
from data_explorer.operator.context import OperatorContext, condition
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.naming import TenantNames
from data_explorer.warehouse.provisioning import provision_tenant
from data_explorer.warehouse.runs import active_run
from data_explorer.warehouse.tenant_state import idle_tenants, tenant_row

log = logging.getLogger(__name__)


class Retry(Exception):
    """Try again later (the kopf layer turns it into a temporary error)."""

    def __init__(self, message: str, delay: float = 10.0):
        super().__init__(message)
        self.delay = delay


def _status(body: dict[str, Any], phase: str, ready: bool | None, reason: str, message: str,
            names: TenantNames | None = None, row: dict[str, Any] | None = None) -> dict[str, Any]:
    meta, old = body.get("metadata") or {}, body.get("status") or {}
    status: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "observedGeneration": meta.get("generation"),
        "conditions": [condition("Ready", ready, reason, message, meta.get("generation"), old.get("conditions"))],
    }
    if names is not None:
        status.update(schema=names.schema, readerRole=names.reader_role)
    if row is not None and row.get("last_materialized_at"):
        status["lastMaterializedAt"] = api_time(row["last_materialized_at"])
    return status


def _write(ctx: OperatorContext, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return ctx.write_status(TENANT_SCHEMAS, body, status, "Tenant")


def _claimed_elsewhere(ctx: OperatorContext, body: dict[str, Any], domain: str) -> str | None:
    meta = body.get("metadata") or {}
    for other in ctx.kube.list(TENANT_SCHEMAS, meta["namespace"]):
        ometa = other.get("metadata") or {}
        if ometa.get("name") == meta.get("name") or ometa.get("deletionTimestamp"):
            continue
        if (other.get("spec") or {}).get("tenant") == domain and ometa.get("creationTimestamp", "") <= meta.get("creationTimestamp", ""):
            return ometa.get("name")
    return None


def _run_name(ctx: OperatorContext, namespace: str | None, run_id: str | None) -> str | None:
    """The MaterializationRun of this run id, as start_run names it in the tenant's message."""
    if run_id is None or namespace is None:
        return None
    for run in ctx.kube.list(MATERIALIZATION_RUNS, namespace):
        if (run.get("status") or {}).get("runId") == run_id:
            return (run.get("metadata") or {}).get("name")
    return None


def reconcile_tenant(ctx: OperatorContext, body: dict[str, Any]) -> dict[str, Any]:
    """Converge one TenantSchema: provisioned unless Expired; status from the control tables."""
    old_phase = (body.get("status") or {}).get("phase")
    try:
        domain = tenant_domain(body)
        parse_ttl((body.get("spec") or {}).get("ttl"))
    except SpecError as exc:
        return _write(ctx, body, _status(body, "Failed", False, "InvalidSpec", str(exc)))
    other = _claimed_elsewhere(ctx, body, domain)
    if other:
        return _write(ctx, body, _status(body, "Failed", False, "TenantClaimed",
                                         f"tenant {domain!r} is already declared by TenantSchema {other!r}"))
    names = TenantNames.for_domain(domain, ctx.settings.role_prefix, ctx.settings.control_schema)
    with ctx.db.connect(autocommit=True) as conn:
        ensure_control_tables(conn, ctx.control)
        row = tenant_row(conn, ctx.control, domain)
        if row is None and old_phase in ("Expired", "Active", "Materializing"):
            # torn down: by the TTL, or by an agent's teardown_schema; the next run provisions it again
            return _write(ctx, body, _status(body, "Expired", False, "Expired",
                                             "the schema was torn down (idle past its TTL, or by teardown_schema); the next run provisions it again", names))
        if row is None:
            if old_phase in (None, "Pending", "Failed"):
                _write(ctx, body, _status(body, "Provisioning", False, "Provisioning", "creating schema and roles", names))
            try:
                provision_tenant(conn, names, ctx.control, ctx.box)
            except Exception as exc:  # a refusal (e.g. a name clash) or PostgreSQL down: say so, retry
                _write(ctx, body, _status(body, "Failed", False, "ProvisioningFailed", f"{type(exc).__name__}: {exc}", names))
                raise Retry(f"provisioning {domain!r} failed: {exc}", delay=30) from exc
            row = tenant_row(conn, ctx.control, domain)
        run_id = active_run(conn, ctx.control, domain) if row is not None else None
    phase = row["phase"] if row and row["phase"] in ("Active", "Materializing", "Expired", "TearingDown") else "Active"
    if run_id is not None and phase == "Active":
        phase = "Materializing"  # a run recorded whose runner has not yet marked the tenant is already under way
    message = {"Expired": "idle past its TTL"}.get(phase, "schema and roles are ready")
    if phase == "Materializing":
        message = run_in_progress(_run_name(ctx, (body.get("metadata") or {}).get("namespace"), run_id))
    return _write(ctx, body, _status(body, phase, phase in ("Active", "Materializing"), phase, message, names, row))


def expire_if_idle(ctx: OperatorContext, body: dict[str, Any]) -> bool:
    """Tear the schema down when it has been idle past spec.ttl; True if it did."""
    try:
        ttl = parse_ttl((body.get("spec") or {}).get("ttl"))
        domain = tenant_domain(body)
    except SpecError:
        return False
    if ttl is None or (body.get("status") or {}).get("phase") not in ("Active", None):
        return False
    names = TenantNames.for_domain(domain, ctx.settings.role_prefix, ctx.settings.control_schema)
    with ctx.db.connect(autocommit=True) as conn:
        if domain not in idle_tenants(conn, ctx.control, ttl):
            return False
        try:
            teardown(conn, ctx.control, names, expired=True)
        except Conflict:
            return False  # a run started meanwhile
    _write(ctx, body, _status(body, "Expired", False, "Expired",
                              f"idle for longer than {body['spec']['ttl']}: schema and roles dropped; the next run provisions them again", names))
    return True


def delete_tenant(ctx: OperatorContext, body: dict[str, Any]) -> None:
    """On deletion: Retain keeps schema and roles; Delete drops them (metadata is kept either way)."""
    spec = body.get("spec") or {}
    if (spec.get("deletionPolicy") or "Retain") != "Delete":
        return
    try:
        domain = tenant_domain(body)
    except SpecError:
        return  # it never provisioned anything
    if _claimed_elsewhere(ctx, body, domain):
        return  # another TenantSchema owns this tenant
    names = TenantNames.for_domain(domain, ctx.settings.role_prefix, ctx.settings.control_schema)
    meta = body.get("metadata") or {}
    ctx.kube.patch(TENANT_SCHEMAS, meta["namespace"], meta["name"],
                   {"status": {"phase": "TearingDown", "message": "dropping schema and roles"}}, status=True)
    with ctx.db.connect(autocommit=True) as conn:
        try:
            teardown(conn, ctx.control, names)
        except Conflict as exc:
            raise Retry(f"{exc}; deletion waits for it", delay=10) from None
    ctx.event(body, "TenantDeleted", f"schema {names.schema} and roles of {domain!r} dropped (deletionPolicy: Delete)")
