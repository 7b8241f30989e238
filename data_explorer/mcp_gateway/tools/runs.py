"""Run tools: list_pipelines, run_materialization, get_materialization_status, cancel_materialization."""

import asyncio
import logging
import uuid
from typing import Annotated

import anyio
from mcp.server.mcpserver import Context
from pydantic import Field

from data_explorer.control.base import Conflict, ControlError, NotFound, RunView
from data_explorer.mcp_gateway.calls import Outcome, ToolCall, current
from data_explorer.mcp_gateway.envelope import ToolFailure
from data_explorer.mcp_gateway.models import PipelineInfo, PipelineList, RunData
from data_explorer.mcp_gateway.tools.shared import RunIdArg, TenantArg, VerboseArg, run_data
from data_explorer.pipelines.registry import PipelineError
from data_explorer.warehouse.naming import TenantNames

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


async def list_pipelines(verbose: VerboseArg = False, ctx: Context = None) -> Outcome[PipelineList]:
    registry = current().gateway.registry
    pipelines = []
    for name in registry.names():
        p = registry.get(name)
        if verbose:
            sources = [{"name": s.name, "description": s.description, "incremental": s.incremental} for s in p.sources]
            tables = [{"name": m.name, "description": m.description} for m in p.models]
        else:
            sources, tables = [s.name for s in p.sources], [m.name for m in p.models]
        pipelines.append(PipelineInfo(name=p.name, description=p.description, sources=sources, tables=tables))
    return Outcome(PipelineList(pipelines=pipelines))


def _explicitly_cancelled(ctx: Context | None) -> bool:
    """True when the client sent notifications/cancelled for this request, False when it just went away.

    The SDK sets ``cancel_requested`` on the request's dispatch context only for an
    explicit cancellation; the context is reached through the request's session.
    """
    try:
        return ctx.request_context.session._request_outbound.cancel_requested.is_set()
    except AttributeError:
        return False


async def _wait(call: ToolCall, run: RunView, ctx: Context | None) -> RunView:
    """Follow the run, relaying progress, until it ends. Cancellation of the call cancels the run only
    when the client asked for it; a client that went away leaves the run going."""
    control = call.gateway.control_plane
    sent, message = -1.0, None
    try:
        while True:
            current_run = await control.get_run(run.run_id)
            if current_run is None:
                raise ToolFailure("NOT_FOUND", f"run {run.run_id} disappeared")
            progress = current_run.progress or {}
            if ctx is not None and progress and (progress.get("current", 0) > sent or progress.get("message") != message):
                # MCP wants each notification's progress to grow: a new message at the same
                # percentage moves it on by a thousandth, never past the next whole percent
                value = max(float(progress.get("current", 0)), min(sent + 0.001, float(int(sent) + 0.999)))
                if value > sent:
                    sent, message = value, progress.get("message")
                    await ctx.report_progress(value, float(progress.get("total", 100)), message)
            if current_run.finished:
                return current_run
            await asyncio.sleep(POLL_SECONDS)
    except BaseException as exc:
        if isinstance(exc, anyio.get_cancelled_exc_class()) and _explicitly_cancelled(ctx):
            with anyio.CancelScope(shield=True):
                await control.cancel_run(run.run_id)
        raise


async def run_materialization(
    tenant: TenantArg = None,
    pipeline: Annotated[str, Field(default="commcare_sync", max_length=48, description="Pipeline to run (list_pipelines).")] = "commcare_sync",
    full: Annotated[bool, Field(default=False, description="Reload everything instead of only what changed since the last run.")] = False,
    wait: Annotated[bool, Field(default=True, description="Wait for the end, with progress notifications; false returns the run_id at once.")] = True,
    ctx: Context = None,
) -> Outcome[RunData]:
    call = current()
    names = await call.tenant(tenant)
    try:
        call.gateway.registry.get(pipeline)
    except PipelineError as exc:
        raise ToolFailure("NOT_FOUND", str(exc)) from None
    try:
        run = await call.gateway.control_plane.start_run(names.domain, pipeline, full, call.caller.credential)
    except Conflict as exc:
        raise ToolFailure("CONFLICT", str(exc), exc.detail) from None
    except ControlError as exc:
        raise ToolFailure("INTERNAL_ERROR", str(exc)) from None
    await call.gateway.touch(names.domain)
    if wait:
        run = await _wait(call, run, ctx)
    warnings = []
    if run.phase == "Failed":
        warnings.append(f"the run failed: {run.error.get('message') if run.error else 'no reason recorded'}")
    return Outcome(run_data(run, verbose=False), names, warnings)


async def _own_run(call: ToolCall, run_id: str) -> tuple[RunView, TenantNames]:
    """A run of one of the caller's tenants; NOT_FOUND otherwise, so other tenants' runs stay invisible."""
    try:
        run_id = str(uuid.UUID(run_id))
    except ValueError:
        raise ToolFailure("VALIDATION_ERROR", f"{run_id!r} is not a run id (run_materialization returns one)") from None
    run = await call.gateway.control_plane.get_run(run_id)
    if run is None or not await call.gateway.is_member(call.caller, run.domain):
        raise ToolFailure("NOT_FOUND", f"no run {run_id} among your project spaces' runs")
    return run, await call.tenant(run.domain)


async def get_materialization_status(run_id: RunIdArg, verbose: VerboseArg = False, ctx: Context = None) -> Outcome[RunData]:
    call = current()
    run, names = await _own_run(call, run_id)
    return Outcome(run_data(run, verbose), names)


async def cancel_materialization(run_id: RunIdArg, ctx: Context = None) -> Outcome[RunData]:
    call = current()
    run, names = await _own_run(call, run_id)
    warnings = []
    if run.finished:
        warnings.append(f"the run had already ended ({run.phase}); nothing to cancel")
    else:
        try:
            run = await call.gateway.control_plane.cancel_run(run.run_id)
        except NotFound as exc:
            raise ToolFailure("NOT_FOUND", str(exc)) from None
    return Outcome(run_data(run, verbose=False), names, warnings)
