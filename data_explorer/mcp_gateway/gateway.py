"""The gateway's state, shared by every tool: settings, database, control plane, query executor, audit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Awaitable, Callable, Iterator

from data_explorer.config import Settings
from data_explorer.control.base import ControlPlane
from data_explorer.control.base import Conflict
from data_explorer.control.lifecycle import teardown
from data_explorer.mcp_gateway.auth import AuthUnavailable, CommCareAuthenticator
from data_explorer.mcp_gateway.calls import Caller, Outcome, ToolCall
from data_explorer.mcp_gateway.audit_writer import AuditWriter
from data_explorer.mcp_gateway.envelope import ToolFailure
from data_explorer.pipelines.registry import Registry
from data_explorer.warehouse.audit import AuditEntry
from data_explorer.warehouse.catalog import schema_exists
from data_explorer.warehouse.credentials import purge_finished_credentials
from data_explorer.warehouse.control_tables import ensure_control_tables
from data_explorer.warehouse.database import Database
from data_explorer.warehouse.service_roles import ensure_audit_login
from data_explorer.warehouse.tenant_login import reader_conninfo, reader_login
from data_explorer.warehouse.secrets import SecretBox
from data_explorer.warehouse.naming import TenantNames
from data_explorer.warehouse.tenant_state import idle_tenants, touch_tenant

log = logging.getLogger(__name__)

TOUCH_INTERVAL = 60.0  # seconds between last_used_at updates of one tenant
MAINTENANCE_INTERVAL = 5.0
LOGIN_CACHE_SECONDS = 30.0  # a tenant's reader login, between lookups


class Gateway:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        control_plane: ControlPlane,
        executor: Any,
        identify: Callable[[Any], Awaitable[Caller | None]],
        transport: str,
        authenticator: CommCareAuthenticator | None = None,
    ):
        self.settings = settings
        self.db = db
        self.control_plane = control_plane
        self.executor = executor
        self.transport = transport
        self.registry = Registry.from_directory(settings.pipelines_dir)
        self.box = SecretBox.from_settings(settings)
        self._identify = identify
        self.authenticator = authenticator  # asks CommCare about project spaces user_domains leaves out
        self._touched: dict[str, float] = {}
        with db.connect(autocommit=True) as conn:
            ensure_control_tables(conn, self.control)
            role, password = ensure_audit_login(conn, self.control, settings.role_prefix, self.box)
        self._audit = AuditWriter(reader_conninfo(db.dsn, role, password), self.control)
        self._logins: dict[str, tuple[float, tuple[str, str, str] | None]] = {}
        self._calls: dict[str, int] = {}  # calls in progress, by principal
        self.ttl_seconds: float | None = settings["DATA_EXPLORER_SCHEMA_TTL_HOURS"] * 3600 or None  # 0: never expire
        if settings["DATA_EXPLORER_CONTROL_PLANE"] == "kubernetes":
            self.ttl_seconds = None  # each TenantSchema's spec.ttl rules there, applied by the operator

    @property
    def control(self) -> str:
        return self.settings.control_schema

    async def caller(self, ctx: Any) -> Caller:
        caller = await self._identify(ctx)
        if caller is None:
            raise ToolFailure("UNAUTHENTICATED", "no verified CommCare identity for this request; sign in again")
        return caller

    async def is_member(self, caller: Caller, domain: str) -> bool:
        """Whether ``caller`` may use project space ``domain``: one CommCare listed for them, or one it let
        their own credential read (``user_domains`` leaves out plans without the integration privilege).
        The latter is one request per credential and project space within the auth cache time."""
        if domain in caller.domains:
            return True
        if self.authenticator is None or caller.credential is None:
            return False
        try:
            return await self.authenticator.member_of(caller.credential, domain)
        except AuthUnavailable as exc:
            raise ToolFailure(
                "UPSTREAM_UNAVAILABLE", f"CommCare could not say whether you belong to {domain!r}: {exc}; try again shortly"
            ) from None

    async def db_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(conn, *args)`` on an autocommit admin connection, off the event loop."""

        def run() -> Any:
            with self.db.connect(autocommit=True) as conn:
                return fn(conn, *args)

        return await asyncio.to_thread(run)

    async def touch(self, domain: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(domain, float("-inf")) < TOUCH_INTERVAL:
            return
        self._touched[domain] = now
        await self.db_call(touch_tenant, self.control, domain)

    @contextlib.contextmanager
    def call_slot(self, principal: str) -> Iterator[None]:
        """One of the caller's ``DATA_EXPLORER_CALLS_PER_CALLER`` calls in progress; RATE_LIMITED past them,
        so that one user's burst cannot hold every query session and thread of the gateway."""
        limit = self.settings["DATA_EXPLORER_CALLS_PER_CALLER"]
        if self._calls.get(principal, 0) >= limit:
            raise ToolFailure("RATE_LIMITED", (
                f"{principal} already has {limit} calls in progress (DATA_EXPLORER_CALLS_PER_CALLER); wait for one "
                "to finish, then try again."))
        self._calls[principal] = self._calls.get(principal, 0) + 1
        try:
            yield
        finally:
            self._calls[principal] -= 1
            if not self._calls[principal]:
                del self._calls[principal]

    async def audit(
        self, call: ToolCall | None, tool: str, arguments: dict[str, Any], status: str, code: str | None,
        outcome: Outcome | None, started: float,
    ) -> bool:
        """One row per call; False when it could not be written (logged loudly): the call then fails closed."""
        arguments = {k: v for k, v in arguments.items() if k != "ctx"}
        entry = AuditEntry(
            principal=call.caller.principal if call else "(unverified)",
            tenant=call.audited_tenant if call else None,
            tool=tool,
            arguments=arguments,
            status=status,
            error_code=code,
            rows=outcome.rows if outcome else None,
            truncated=outcome.truncated if outcome else None,
            duration_ms=int((time.monotonic() - started) * 1000),
            transport=self.transport,
        )
        try:
            await self._audit.write(entry)
        except Exception:
            log.exception("could not write the audit row of a %s call", tool)
            return False
        return True

    async def reader_login(self, domain: str, schema: str) -> tuple[str, str, str] | None:
        """(schema, reader role, password) while the tenant has published data, else None. Kept for
        LOGIN_CACHE_SECONDS: looking it up on every query cost a connection per call."""
        now = time.monotonic()
        cached = self._logins.get(domain)
        if cached and cached[0] > now and cached[1] is not None:
            return cached[1]

        def lookup(conn):
            if not schema_exists(conn, schema):
                return None
            return reader_login(conn, self.control, domain, self.box)

        found = await self.db_call(lookup)
        self._logins[domain] = (now + LOGIN_CACHE_SECONDS, found)
        return found

    async def forget_tenant(self, domain: str) -> None:
        """Close the tenant's query sessions (before its roles are dropped) and forget its login."""
        self._logins.pop(domain, None)
        await self.executor.forget(domain)

    async def sweep_once(self) -> list[str]:
        """Tear down schemas idle past the TTL; return their tenants. Metadata and run history stay."""
        await self.db_call(purge_finished_credentials, self.control)
        if not self.ttl_seconds:
            return []
        expired = await self.db_call(idle_tenants, self.control, self.ttl_seconds)
        done = []
        for domain in expired:
            try:
                names = TenantNames.for_domain(domain, self.settings.role_prefix, self.settings.control_schema)
                await self.forget_tenant(domain)
                await self.db_call(lambda conn: teardown(conn, self.control, names, expired=True))
            except Conflict:
                continue  # a run started meanwhile: not idle after all
            except Exception:
                log.exception("could not tear down idle tenant %s; the next sweep tries again", domain)
                continue
            log.info("tore down %s: idle for more than %.1f hours", domain, self.ttl_seconds / 3600)
            done.append(domain)
        return done

    async def maintain_forever(self, interval: float = MAINTENANCE_INTERVAL) -> None:
        """Collect exited runners and close idle query sessions, every few seconds."""
        while True:
            try:
                await self.control_plane.maintain()
                await self.executor.prune()
            except Exception:
                log.exception("gateway maintenance failed; it will try again")
            await asyncio.sleep(interval)

    async def sweep_forever(self) -> None:
        interval = min(600.0, (self.ttl_seconds or 3600) / 4)
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("the idle-schema sweep failed; it will try again")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        await self._audit.close()
        await self.executor.close()
        await self.control_plane.close()
