"""The query path: one read-only statement in a session logged in as the tenant's reader.

Isolation does not rest on the SQL guard (``sql_guard``) but on the session:

- it is logged in as the tenant's own reader, a LOGIN role that is a member of
  nothing, so no ``SET ROLE``/``RESET ROLE``/``set_config('role')`` can reach
  another tenant; a small pool per tenant, opened lazily;
- every query runs as ``BEGIN READ ONLY``; ``SET LOCAL`` search_path (the
  tenant's schema alone), statement_timeout, idle_in_transaction_session_timeout,
  client_connection_check_interval, TimeZone (UTC), DateStyle; a ``SELECT`` that
  takes the snapshot (so ``SET TRANSACTION READ WRITE`` can no longer succeed);
  then the statement; then ``ROLLBACK`` and ``DISCARD ALL`` (which also drops
  session-level advisory locks, prepared statements, cursors, LISTENs and
  settings) before the session goes back to the pool. A session in any other
  state is closed instead;
- sessions start with ``default_transaction_read_only=on`` and the timeouts as
  startup options, so ``DISCARD ALL`` restores them too.

One statement's wire protocol, with the row and byte caps, is in ``query_session``; errors
and their codes in ``query_errors``; how values become JSON in ``query_values``.

A cancelled asyncio task (the MCP layer cancels the tool call) sends a cancel
request to PostgreSQL for the running statement and closes the session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq, sql

from data_explorer.warehouse.query_errors import (
    QueryError,
    QueryFailed,
    QueryRejected,
    QueryTimeout,
    connect_failed,
    exception_error,
    mapped_error,
)
from data_explorer.warehouse.query_session import Fetched, Unusable, fetch_rows
from data_explorer.warehouse.query_values import LOADERS, registry_name
from data_explorer.warehouse.sql_guard import SqlRejected, check_sql
from data_explorer.warehouse.tenant_login import reader_conninfo

log = logging.getLogger(__name__)

APPLICATION_NAME = "data-explorer query"
FIRST_USER_OID = 16384  # PostgreSQL's FirstNormalObjectId: OIDs below are built in, the same in every database
_GUARD_IN_THREAD_CHARS = 4000  # parsing a long statement takes a while: keep it off the event loop
# ... and off the loop's shared pool, where database calls wait: two checks at a time, the rest queue
_GUARD_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="sql-guard")
_IDLE = pq.TransactionStatus.IDLE
_ACTIVE = pq.TransactionStatus.ACTIVE

__all__ = ["QueryError", "QueryExecutor", "QueryFailed", "QueryRejected", "QueryResult", "QueryTimeout", "TenantLogin"]


# --- what callers pass and get --------------------------------------------------------------


@dataclass(frozen=True)
class TenantLogin:
    """Who a query runs as: the tenant's reader login (from ``tenant_login.reader_login``)."""

    domain: str
    schema: str
    role: str
    password: str = field(repr=False)


@dataclass
class QueryResult:
    columns: list[dict[str, str]]  # [{"name", "type"}] in result order; type as format_type() spells it
    rows: list[list[Any]]  # JSON-safe values
    row_count: int  # rows returned (after the caps)
    truncated: bool
    truncated_reason: str | None  # "rows" | "bytes" | None
    elapsed_ms: int
    statement: str = ""  # what was executed (the guard's normalized form when the guard is on)


# --- the pool of one tenant --------------------------------------------------------------------------


class _TenantPool:
    """At most ``size`` sessions of one tenant's reader; idle ones kept for reuse."""

    def __init__(self, login: TenantLogin, conninfo: str, size: int, idle_seconds: float, connect_kwargs: dict):
        self.fingerprint = _fingerprint(login)
        self._conninfo = conninfo
        self._slots = asyncio.Semaphore(size)
        self._size = size
        self._idle: list[tuple[psycopg.AsyncConnection, float]] = []
        self._idle_seconds = idle_seconds
        self._connect_kwargs = connect_kwargs
        self.closed = False

    async def acquire(self, timeout: float) -> tuple[psycopg.AsyncConnection, bool]:
        """A session and whether it is new. Waits at most ``timeout`` seconds for a free slot."""
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise QueryTimeout(
                f"All {self._size} query sessions of this tenant stayed busy for {timeout:g} s; try again when "
                "the running queries finish."
            ) from None
        try:
            now = time.monotonic()
            while self._idle:
                conn, since = self._idle.pop()
                if now - since < self._idle_seconds and not conn.closed and not conn.broken:
                    return conn, False
                await conn.close()
            conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._connect_kwargs)
            for name, loader in LOADERS.items():
                conn.adapters.register_loader(name, loader)
            return conn, True
        except BaseException:
            self._slots.release()
            raise

    async def release(self, conn: psycopg.AsyncConnection, reusable: bool) -> None:
        try:
            if reusable and not self.closed and not conn.closed and conn.info.transaction_status == _IDLE:
                self._idle.append((conn, time.monotonic()))
            else:
                await conn.close()
        finally:
            self._slots.release()

    async def prune(self) -> None:
        """Close sessions idle longer than ``idle_seconds``, so a tenant queried once holds none."""
        now = time.monotonic()
        stale = [(c, t) for c, t in self._idle if now - t >= self._idle_seconds]
        self._idle = [(c, t) for c, t in self._idle if now - t < self._idle_seconds]
        for conn, _ in stale:
            await conn.close()

    async def close(self) -> None:
        self.closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()


def _fingerprint(login: TenantLogin) -> tuple[str, str, str]:
    return login.schema, login.role, hashlib.sha256(login.password.encode()).hexdigest()


# --- the executor -------------------------------------------------------------------------------------


class QueryExecutor:
    """Runs agents' SQL for tenants, each in sessions logged in as that tenant's reader."""

    def __init__(
        self,
        admin_dsn: str,
        *,
        max_rows: int = 500,
        max_bytes: int = 1 << 20,
        statement_timeout: float = 30.0,
        pool_size: int = 4,
        idle_seconds: float = 300.0,
        acquire_timeout: float | None = None,
        connect_timeout: int = 10,
    ):
        if max_rows < 1 or max_bytes < 1 or statement_timeout <= 0 or pool_size < 1:
            raise ValueError("max_rows, max_bytes, statement_timeout and pool_size must be positive")
        self._admin_dsn = admin_dsn
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.statement_timeout = float(statement_timeout)
        self.pool_size = pool_size
        self.idle_seconds = idle_seconds
        self.acquire_timeout = acquire_timeout if acquire_timeout is not None else self.statement_timeout + 5
        self._timeout_ms = max(1, int(self.statement_timeout * 1000))
        self._idle_tx_ms = max(60_000, 2 * self._timeout_ms)
        self._connect_kwargs = {
            "autocommit": True,
            "prepare_threshold": None,  # never prepare: DISCARD ALL would pull statements from under psycopg
            "application_name": APPLICATION_NAME,
            "connect_timeout": connect_timeout,
            "options": (
                f"-c default_transaction_read_only=on -c statement_timeout={self._timeout_ms} "
                f"-c idle_in_transaction_session_timeout={self._idle_tx_ms}"
            ),
        }
        self._pools: dict[str, _TenantPool] = {}
        self._pools_lock = asyncio.Lock()
        self._type_names: dict[tuple[int, int], str] = {}
        self._background: set[asyncio.Task] = set()

    async def run(
        self, tenant: TenantLogin, sql_text: str, *, max_rows: int | None = None, guard: bool = True
    ) -> QueryResult:
        """Run one statement as the tenant's reader; raise a QueryError subclass when it gives no result."""
        started = time.monotonic()
        cap = self.max_rows if max_rows is None else max_rows
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise QueryRejected(f"max_rows must be a positive whole number, not {max_rows!r}.", rule="argument")
        statement = await self._statement(tenant, sql_text, guard)
        pool = await self._pool(tenant)
        outcome = await self._attempt(pool, tenant, statement, cap, may_retry=True)
        if outcome is None:  # a pooled session the server had closed: once more, on a new one
            outcome = await self._attempt(pool, tenant, statement, cap, may_retry=False)
        fetched, columns = outcome
        if fetched.error is not None:
            raise mapped_error(fetched.error, self.statement_timeout)
        return QueryResult(
            columns=columns,
            rows=fetched.rows,
            row_count=len(fetched.rows),
            truncated=fetched.truncated_reason is not None,
            truncated_reason=fetched.truncated_reason,
            elapsed_ms=int((time.monotonic() - started) * 1000),
            statement=statement,
        )

    async def prune(self) -> None:
        """Close every tenant's sessions that have stayed idle too long."""
        async with self._pools_lock:
            pools = list(self._pools.values())
        for pool in pools:
            await pool.prune()

    async def forget(self, domain: str) -> None:
        """Close the tenant's idle sessions (before its roles are dropped); sessions in use close when they finish."""
        async with self._pools_lock:
            pool = self._pools.pop(domain, None)
        if pool is not None:
            await pool.close()

    async def close(self) -> None:
        async with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # --- steps ---

    async def _statement(self, tenant: TenantLogin, sql_text: str, guard: bool) -> str:
        if not isinstance(sql_text, str):
            raise QueryRejected("The SQL must be text.", rule="syntax")
        if "\x00" in sql_text:
            raise QueryRejected("The SQL contains a NUL character, which PostgreSQL does not accept.", rule="nul")
        if not guard:
            return sql_text
        try:
            if len(sql_text) > _GUARD_IN_THREAD_CHARS:
                return await asyncio.get_running_loop().run_in_executor(_GUARD_THREADS, check_sql, sql_text, tenant.schema)
            return check_sql(sql_text, tenant.schema)
        except SqlRejected as exc:
            raise QueryRejected(exc.reason, rule=exc.rule) from None

    async def _attempt(
        self, pool: _TenantPool, tenant: TenantLogin, statement: str, cap: int, *, may_retry: bool
    ) -> tuple[Fetched, list[dict[str, str]]] | None:
        """The statement on one session of the pool; None if a pooled session was found dead before it was sent."""
        try:
            conn, fresh = await pool.acquire(self.acquire_timeout)
        except psycopg.OperationalError as exc:
            raise connect_failed(exc, tenant.domain) from None
        reusable = False
        try:
            try:
                await self._begin(conn, tenant)
            except psycopg.OperationalError as exc:
                if may_retry and not fresh:
                    log.info("a pooled query session of %s had gone away; opening a new one", tenant.domain)
                    return None
                raise QueryFailed(
                    f"The query session was lost before the query started ({exception_error(exc).message}); try again."
                ) from None
            except psycopg.Error as exc:
                raise mapped_error(exception_error(exc), self.statement_timeout) from None
            try:
                fetched = await fetch_rows(conn, statement, cap, self.max_bytes)
            except Unusable as exc:
                raise QueryFailed(f"{exc}.", code="VALIDATION_ERROR") from None
            except UnicodeEncodeError:
                raise QueryRejected(
                    f"The SQL has characters the database's encoding ({conn.info.encoding}) cannot hold.", rule="encoding"
                ) from None
            except psycopg.OperationalError as exc:
                raise QueryFailed(
                    f"The query session ended while the query ran ({exception_error(exc).message}); try again."
                ) from None
            columns, reusable = await self._settle(conn, fetched)
            return fetched, columns
        except BaseException:
            await self._abandon(conn)
            raise
        finally:
            await pool.release(conn, reusable)

    async def _pool(self, tenant: TenantLogin) -> _TenantPool:
        async with self._pools_lock:
            pool = self._pools.get(tenant.domain)
            if pool is not None and pool.fingerprint != _fingerprint(tenant):
                self._pools.pop(tenant.domain)
                await pool.close()  # the tenant was provisioned again: new role or password
                pool = None
            if pool is None:
                conninfo = reader_conninfo(self._admin_dsn, tenant.role, tenant.password)
                pool = _TenantPool(tenant, conninfo, self.pool_size, self.idle_seconds, self._connect_kwargs)
                self._pools[tenant.domain] = pool
            return pool

    async def _begin(self, conn: psycopg.AsyncConnection, tenant: TenantLogin) -> None:
        setup = sql.SQL(
            "BEGIN READ ONLY; SET LOCAL search_path TO {schema}; SET LOCAL statement_timeout = {timeout}; "
            "SET LOCAL idle_in_transaction_session_timeout = {idle}; SET LOCAL client_connection_check_interval = 1000; "
            "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; "
            "SELECT current_user, session_user"
        ).format(
            schema=sql.Identifier(tenant.schema), timeout=sql.Literal(self._timeout_ms), idle=sql.Literal(self._idle_tx_ms)
        )
        cur = await conn.execute(setup)  # our own text: several statements, one round trip
        while cur.nextset():
            pass  # to the result of the last one
        row = await cur.fetchone()
        if row != (tenant.role, tenant.role):
            raise QueryFailed("The query session is not logged in as the tenant's reader; it was closed.")

    async def _settle(self, conn: psycopg.AsyncConnection, fetched: Fetched) -> tuple[list[dict[str, str]], bool]:
        """Roll back, name the column types, DISCARD ALL: the columns, and whether the session may be reused."""
        names = None
        reusable = False
        if not fetched.broken and not conn.closed and not conn.broken:
            try:
                if conn.pgconn.transaction_status != _IDLE:
                    await conn.execute("ROLLBACK")
                names = await self._type_names_of(conn, [(oid, mod) for _, oid, mod in fetched.columns])
                await conn.execute("DISCARD ALL")
                reusable = conn.pgconn.transaction_status == _IDLE
            except psycopg.Error as exc:
                log.warning("a query session could not be reset and is closed: %s", exc)
        if names is None:
            names = [registry_name(conn, oid) for _, oid, _ in fetched.columns]
        return [{"name": name, "type": type_name} for (name, _, _), type_name in zip(fetched.columns, names)], reusable

    async def _type_names_of(self, conn: psycopg.AsyncConnection, types: list[tuple[int, int]]) -> list[str]:
        """Type names as format_type() spells them (as describe_table shows them); built-in ones cached."""
        missing = sorted({t for t in types if t not in self._type_names})
        found: dict[tuple[int, int], str] = {}
        if missing:
            cur = await conn.execute(
                "SELECT format_type(o, NULLIF(m, -1)) "
                "FROM unnest(%s::oid[], %s::int4[]) WITH ORDINALITY AS t(o, m, n) ORDER BY n",
                ([oid for oid, _ in missing], [mod for _, mod in missing]),
            )
            for key, (name,) in zip(missing, await cur.fetchall()):
                found[key] = name
                if key[0] < FIRST_USER_OID:
                    self._type_names[key] = name
        return [self._type_names.get(t) or found.get(t) or f"oid {t[0]}" for t in types]

    async def _abandon(self, conn: psycopg.AsyncConnection) -> None:
        """After anything unexpected (a cancelled task included): stop the statement in PostgreSQL, close the session.

        Runs shielded, so a second cancellation cannot leave the statement running."""
        task = asyncio.ensure_future(self._cancel_and_close(conn))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass  # it finishes in the background; the caller is re-raising the original exception

    @staticmethod
    async def _cancel_and_close(conn: psycopg.AsyncConnection) -> None:
        try:
            if not conn.closed and conn.pgconn.transaction_status == _ACTIVE:
                await conn.cancel_safe(timeout=5.0)
        except Exception as exc:  # noqa: BLE001 - best effort: the session is closed below anyway
            log.warning("could not cancel a query being abandoned: %s", exc)
        finally:
            await conn.close()
