"""One tool call: who calls, which tenant it may act on, and the envelope and audit row around it.

A tool body is a plain async function returning an ``Outcome``; ``gateway_tool``
wraps it so that every call, whatever happens, ends in the envelope (with the
MCP error flag on failure) and one audit row, and so that the body can reach
the gateway and the caller through ``current()``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, Generic, TypeVar

import anyio
from mcp.types import CallToolResult

from data_explorer.mcp_gateway.envelope import Envelope, ErrorInfo, ToolFailure, to_result
from data_explorer.warehouse.naming import InvalidDomain, TenantNames

if TYPE_CHECKING:
    from data_explorer.mcp_gateway.gateway import Gateway

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    principal: str
    domains: tuple[str, ...]
    credential: Any = field(repr=False, default=None)
    transport: str = "stdio"


@dataclass
class Outcome(Generic[T]):
    data: T
    names: TenantNames | None = None
    warnings: list[str] = field(default_factory=list)
    rows: int | None = None
    truncated: bool | None = None


@dataclass
class ToolCall:
    gateway: "Gateway"
    caller: Caller
    ctx: Any
    tool: str
    names: TenantNames | None = None
    requested: str | None = None  # the tenant asked for, kept for the audit row even when refused

    @property
    def audited_tenant(self) -> str | None:
        return self.names.domain if self.names else self.requested

    async def tenant(self, tenant: str | None) -> TenantNames:
        """The tenant this call acts on: one of the caller's own project spaces, never a fallback.

        A project space CommCare did not list for the caller (``user_domains`` leaves out plans
        without the integration privilege) is theirs when CommCare lets their credential read it."""
        self.requested = tenant if isinstance(tenant, str) else None
        domains = self.caller.domains
        if tenant is None:
            if len(domains) == 1:
                tenant = domains[0]
            elif not domains:
                raise ToolFailure(
                    "FORBIDDEN",
                    f"CommCare lists no project space for {self.caller.principal}; name one you belong to with tenant=",
                )
            else:
                raise ToolFailure(
                    "VALIDATION_ERROR",
                    f"you belong to {len(domains)} project spaces: pass tenant= one of {', '.join(domains)}",
                    {"tenants": list(domains)},
                )
        refused = ToolFailure(
            "FORBIDDEN",
            f"tenant {tenant!r} is not one of your CommCare project spaces ({', '.join(domains) or 'none'})",
        )
        try:
            names = TenantNames.for_domain(tenant, self.gateway.settings.role_prefix, self.gateway.settings.control_schema)
        except InvalidDomain as exc:
            raise (refused if tenant not in domains else ToolFailure("VALIDATION_ERROR", str(exc))) from None
        if not await self.gateway.is_member(self.caller, tenant):
            raise refused
        self.names = names
        return names


_current: ContextVar[ToolCall] = ContextVar("data_explorer_tool_call")


def current() -> ToolCall:
    return _current.get()


def gateway_tool(gateway: "Gateway", name: str, data_model: type) -> Callable[[Callable[..., Awaitable[Outcome]]], Callable]:
    """Wrap a tool body: envelope, error flag, audit row; the output schema is Envelope[data_model]."""

    def decorate(body: Callable[..., Awaitable[Outcome]]) -> Callable:
        @functools.wraps(body)
        async def tool(*args: Any, **kwargs: Any) -> CallToolResult:
            ctx = kwargs.get("ctx")
            started = time.monotonic()
            call: ToolCall | None = None
            envelope: Envelope
            try:
                caller = await gateway.caller(ctx)
                call = ToolCall(gateway, caller, ctx, name)
                token = _current.set(call)
                try:
                    with gateway.call_slot(caller.principal):
                        outcome = await body(*args, **kwargs)
                finally:
                    _current.reset(token)
                names = outcome.names or call.names
                envelope = Envelope[data_model](
                    success=True, data=outcome.data, warnings=outcome.warnings,
                    tenant_id=names.domain if names else None, schema=names.schema if names else None,
                )
            except ToolFailure as failure:
                outcome = None
                names = call.names if call else None
                envelope = Envelope[data_model](
                    success=False, error=ErrorInfo(code=failure.code, message=failure.message, detail=failure.detail),
                    tenant_id=names.domain if names else None, schema=names.schema if names else None,
                )
            except asyncio.CancelledError:
                with anyio.CancelScope(shield=True):  # the row is written even though the call is cancelled
                    await gateway.audit(call, name, kwargs, "error", "CANCELLED", None, started)
                raise
            except Exception as exc:  # the caller gets a code and a line; the log gets the rest
                log.exception("tool %s failed", name)
                outcome = None
                envelope = Envelope[data_model](
                    success=False,
                    error=ErrorInfo(code="INTERNAL_ERROR", message=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"),
                )
            envelope.timing_ms = int((time.monotonic() - started) * 1000)
            audited = await gateway.audit(
                call, name, kwargs, "ok" if envelope.success else "error",
                envelope.error.code if envelope.error else None, outcome, started,
            )
            if not audited:  # fails closed: no answer goes out that the audit log does not hold
                envelope = Envelope[data_model](success=False, error=ErrorInfo(code="INTERNAL_ERROR", message=(
                    "the call could not be recorded in the audit log, so its result is withheld. Try again; if it "
                    "persists, the operator must look at the gateway's log (what the call did, such as starting a "
                    "run, may have happened)."
                )), timing_ms=envelope.timing_ms)
            return to_result(envelope)

        signature = inspect.signature(body, eval_str=True)  # resolved in the body's module
        result_type = Annotated[CallToolResult, Envelope[data_model]]
        tool.__signature__ = signature.replace(return_annotation=result_type)  # type: ignore[attr-defined]
        tool.__annotations__ = {
            **{p.name: p.annotation for p in signature.parameters.values() if p.annotation is not p.empty},
            "return": result_type,
        }
        del tool.__wrapped__  # the SDK must read the wrapper's signature, not the body's
        return tool

    return decorate
