"""Tenant tools: list_tenants, get_schema_status, teardown_schema."""

from datetime import timedelta
from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from data_explorer.control.base import Conflict
from data_explorer.control.lifecycle import teardown
from data_explorer.mcp_gateway.calls import Outcome, current
from data_explorer.mcp_gateway.envelope import ToolFailure
from data_explorer.mcp_gateway.models import TeardownData, TenantList, TenantStatus
from data_explorer.mcp_gateway.tools.shared import TenantArg, VerboseArg, incomplete, run_summary
from data_explorer.warehouse.catalog import schema_exists
from data_explorer.warehouse.naming import InvalidDomain, TenantNames
from data_explorer.warehouse.tenant_state import latest_run, tenant_row, unfinished_run


def _status(conn, control: str, names: TenantNames, ttl_seconds: float | None) -> TenantStatus:
    row = tenant_row(conn, control, names.domain)
    active = unfinished_run(conn, control, names.domain)
    last = latest_run(conn, control, names.domain)
    published = last if last is None or last["phase"] == "Succeeded" else latest_run(conn, control, names.domain, succeeded=True)
    has_data = schema_exists(conn, names.schema)
    phase = "Pending" if row is None else ("Materializing" if active else row["phase"])
    if phase == "Materializing" and not active:
        phase = "Active"  # its runner died; the next run or teardown settles the row
    expires_at = None
    if row is not None and ttl_seconds:
        idle_since = max(t for t in (row["created_at"], row["last_used_at"], row["last_materialized_at"]) if t)
        expires_at = idle_since + timedelta(seconds=ttl_seconds)
    if active:
        next_step = f"a run is in progress: get_materialization_status(run_id='{active['run_id']}')"
    elif has_data:
        next_step = "call list_tables, then query"
    else:
        next_step = f"no data yet: call run_materialization(tenant='{names.domain}')"
    return TenantStatus(
        tenant_id=names.domain, schema=names.schema, provisioned=row is not None, phase=phase, has_data=has_data,
        last_materialized_at=row["last_materialized_at"] if row else None, last_run=run_summary(last),
        active_run=run_summary(active), expires_at=expires_at, next_step=next_step,
        incomplete=incomplete((published or {}).get("phases")) if has_data else None,
    )


UNLISTED = (
    "CommCare lists only project spaces whose plan includes its integration feature. To use another project space "
    "you belong to, pass its name (as in its address, /a/<name>/) as tenant= to get_schema_status, "
    "run_materialization or any tenant tool: the gateway asks CommCare whether you belong to it."
)


async def list_tenants(verbose: VerboseArg = False, ctx: Context = None) -> Outcome[TenantList]:
    call = current()
    gateway = call.gateway
    statuses = []
    for domain in call.caller.domains:
        try:
            names = TenantNames.for_domain(domain, gateway.settings.role_prefix, gateway.settings.control_schema)
        except InvalidDomain:
            continue  # a project space whose name cannot be a schema is not offered
        status = await gateway.db_call(_status, gateway.control, names, gateway.ttl_seconds)
        if not verbose:
            status = status.model_copy(update={"last_run": None, "expires_at": None})
        statuses.append(status)
    return Outcome(TenantList(tenants=statuses, unlisted=UNLISTED))


async def get_schema_status(tenant: TenantArg = None, ctx: Context = None) -> Outcome[TenantStatus]:
    call = current()
    names = await call.tenant(tenant)
    status = await call.gateway.db_call(_status, call.gateway.control, names, call.gateway.ttl_seconds)
    return Outcome(status, names)


async def teardown_schema(
    tenant: TenantArg = None,
    confirm: Annotated[bool, Field(default=False, description="Must be true: the tables are dropped.")] = False,
    ctx: Context = None,
) -> Outcome[TeardownData]:
    call = current()
    names = await call.tenant(tenant)
    gateway = call.gateway
    if confirm is not True:
        raise ToolFailure(
            "VALIDATION_ERROR",
            f"teardown drops every table of {names.domain!r} and its database roles; call again with confirm=true",
        )
    await gateway.forget_tenant(names.domain)
    try:
        dropped = await gateway.db_call(teardown, gateway.control, names)
    except Conflict as exc:
        raise ToolFailure("CONFLICT", str(exc), exc.detail) from None
    return Outcome(TeardownData(tenant_id=names.domain, dropped=dropped, metadata_kept=True), names)
