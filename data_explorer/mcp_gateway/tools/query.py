"""The query tool: read-only SQL in a session logged in as the tenant's reader."""

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from data_explorer.mcp_gateway.calls import Outcome, current
from data_explorer.mcp_gateway.envelope import ERROR_CODES, ToolFailure
from data_explorer.mcp_gateway.models import QueryData
from data_explorer.mcp_gateway.tools.shared import TenantArg
from data_explorer.warehouse import query as query_path

MAX_SQL_CHARS = 100_000


async def query(
    sql: Annotated[str, Field(min_length=1, max_length=MAX_SQL_CHARS, description="One read-only SELECT (WITH, set operations and EXPLAIN allowed) over the tenant's tables; unqualified table names.")],
    tenant: TenantArg = None,
    max_rows: Annotated[int | None, Field(default=None, ge=1, le=10_000, description="Row cap for this query (default from the server settings).")] = None,
    ctx: Context = None,
) -> Outcome[QueryData]:
    call = current()
    names = await call.tenant(tenant)
    gateway = call.gateway

    found = await gateway.reader_login(names.domain, names.schema)
    if found is None:
        raise ToolFailure(
            "NO_DATA", f"{names.domain!r} has no published data yet: call run_materialization(tenant='{names.domain}') first"
        )
    schema, role, password = found
    tenant_login = query_path.TenantLogin(names.domain, schema, role, password)
    try:
        result = await gateway.executor.run(tenant_login, sql, max_rows=max_rows)
    except query_path.QueryError as exc:
        code = exc.code if exc.code in ERROR_CODES else "INTERNAL_ERROR"
        raise ToolFailure(code, str(exc), getattr(exc, "detail", None) or {}) from None
    await gateway.touch(names.domain)
    warnings = []
    if result.truncated:
        warnings.append(
            f"the result was cut at the {result.truncated_reason} cap ({result.row_count} rows returned): "
            "aggregate, filter or add LIMIT/OFFSET"
        )
    data = QueryData(
        columns=result.columns, rows=result.rows, row_count=result.row_count, truncated=result.truncated,
        truncated_reason=result.truncated_reason, max_rows=max_rows or gateway.executor.max_rows,
    )
    return Outcome(data, names, warnings, rows=result.row_count, truncated=result.truncated)
