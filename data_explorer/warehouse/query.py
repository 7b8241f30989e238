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
- the statement goes over the extended protocol (Parse/Bind/Execute), which
  carries exactly one statement: ``SELECT 1; DELETE ...`` is refused by the
  server ("cannot insert multiple commands into a prepared statement"). psycopg
  uses the simple protocol for a query without parameters, so the statement is
  sent here with ``PGconn.send_query_params`` directly;
- sessions start with ``default_transaction_read_only=on`` and the timeouts as
  startup options, so ``DISCARD ALL`` restores them too.

Rows arrive in chunks (libpq chunked-rows mode, single-row mode on older libpq),
so a large result is never held whole: reading stops at ``max_rows + 1`` rows or
when the rows' JSON passes ``max_bytes``, and the statement is then cancelled.
A single value is still read whole by libpq before it can be measured (up to
PostgreSQL's 1 GB per value).

A cancelled asyncio task (the MCP layer cancels the tool call) sends a cancel
request to PostgreSQL for the running statement and closes the session.

Errors carry a stable ``code`` for the MCP layer (``error_code`` documents the
SQLSTATE mapping). Messages hold PostgreSQL's first line and SQLSTATE, never the
DSN or the password.

Values are JSON-safe (``json_safe``): NUMERIC becomes an int when integral, else
a float (more than 15 significant digits are rounded: cast to text in SQL to keep
them); NaN and infinities become strings; timestamps, dates and times ISO 8601
strings (PostgreSQL's own text where Python cannot hold the value, such as
``infinity``); intervals PostgreSQL's text; UUIDs strings; bytea ``\\x``-prefixed
hex; arrays lists; json/jsonb as parsed; anything else its text.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg import pq, sql
from psycopg.types.datetime import DateLoader, TimeLoader, TimestampLoader, TimestamptzLoader, TimetzLoader
from psycopg.types.string import TextLoader

from data_explorer.warehouse.sql_guard import SqlRejected, check_sql
from data_explorer.warehouse.tenant_login import reader_conninfo

log = logging.getLogger(__name__)

APPLICATION_NAME = "data-explorer query"
FIRST_USER_OID = 16384  # PostgreSQL's FirstNormalObjectId: OIDs below are built in, the same in every database
_GUARD_IN_THREAD_CHARS = 4000  # parsing a long statement takes a while: keep it off the event loop
_CHUNK_ROWS = 200
_TEXT = pq.Format.TEXT
_IDLE = pq.TransactionStatus.IDLE
_ACTIVE = pq.TransactionStatus.ACTIVE
_ROW_STATUSES = (pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK, pq.ExecStatus.TUPLES_OK)
_COPY_STATUSES = (pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_BOTH)


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


class QueryError(Exception):
    """A query that did not produce a result; ``code`` is one of the gateway's error codes."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, sqlstate: str | None = None, detail: dict | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.sqlstate = sqlstate
        self.detail = dict(detail or {})
        if sqlstate:
            self.detail.setdefault("sqlstate", sqlstate)


class QueryRejected(QueryError):
    """Refused before reaching PostgreSQL (the SQL guard, or an argument)."""

    code = "VALIDATION_ERROR"

    def __init__(self, message: str, *, rule: str | None = None):
        super().__init__(message, detail={"rule": rule} if rule else None)
        self.rule = rule


class QueryTimeout(QueryError):
    """The statement ran past statement_timeout (or waited too long for a session) and was stopped."""

    code = "QUERY_TIMEOUT"


class QueryFailed(QueryError):
    """PostgreSQL refused or failed the statement; ``code`` from ``error_code(sqlstate)``."""


# --- error mapping ------------------------------------------------------------------------------

_NOT_FOUND_STATES = {"42P01", "42883", "42703", "42704", "3F000", "3D000", "26000", "34000"}
_VALIDATION_CLASSES = ("42", "22", "21", "0A", "54", "25", "2D", "3B", "2F", "P0", "2B", "23", "27", "44", "0B", "0L", "0P")
_ADVICE = {
    "FORBIDDEN": "Queries are read-only and can read only this tenant's tables.",
    "NOT_FOUND": "Check the names: list_tables and describe_table show the tenant's tables and columns.",
    "VALIDATION_ERROR": "Fix the SQL and try again.",
    "CONFLICT": "Try again in a moment.",
}


def error_code(sqlstate: str | None) -> str:
    """The gateway error code for a PostgreSQL SQLSTATE.

    - 57014 query_canceled (statement_timeout) -> QUERY_TIMEOUT
    - 42501 insufficient_privilege, 25006 read_only_sql_transaction, class 28
      (invalid authorization) -> FORBIDDEN
    - undefined table/function/column/object (42P01, 42883, 42703, 42704),
      invalid schema/catalog/statement/cursor name (3F000, 3D000, 26000, 34000) -> NOT_FOUND
    - other errors of the statement: class 42 (syntax, ambiguity, grouping,
      types), 22 (data: division by zero, bad input), 21, 0A (not supported),
      54 (too complex), 25 and 2D (transaction state), 3B (savepoints), 2F, P0,
      2B, 23, 27, 44, 0B, 0L, 0P, and 53400 (a configured limit such as temp_file_limit) -> VALIDATION_ERROR
    - class 40 (serialization, deadlock) and 55P03 (lock not available) -> CONFLICT
    - anything else (connection, resources, operator intervention, internal) -> INTERNAL_ERROR
    """
    if not sqlstate:
        return "INTERNAL_ERROR"
    if sqlstate == "57014":
        return "QUERY_TIMEOUT"
    if sqlstate in ("42501", "25006") or sqlstate.startswith("28"):
        return "FORBIDDEN"
    if sqlstate in _NOT_FOUND_STATES:
        return "NOT_FOUND"
    if sqlstate.startswith(_VALIDATION_CLASSES) or sqlstate == "53400":
        return "VALIDATION_ERROR"
    if sqlstate.startswith("40") or sqlstate == "55P03":
        return "CONFLICT"
    return "INTERNAL_ERROR"


@dataclass
class _PgError:
    sqlstate: str | None
    message: str
    hint: str | None = None
    position: str | None = None


def _mapped(error: _PgError, timeout: float) -> QueryError:
    code = error_code(error.sqlstate)
    detail: dict[str, Any] = {}
    if error.hint:
        detail["hint"] = error.hint
    if error.position:
        detail["position"] = int(error.position) if error.position.isdigit() else error.position
    where = f" (SQLSTATE {error.sqlstate})" if error.sqlstate else ""
    if code == "QUERY_TIMEOUT":
        return QueryTimeout(
            f"The query ran past the statement timeout of {timeout:g} s and was stopped: {error.message}{where}. "
            "Narrow it (WHERE, LIMIT) or aggregate.",
            sqlstate=error.sqlstate,
            detail=detail,
        )
    advice = _ADVICE.get(code)
    hint = f" Hint: {error.hint}" if error.hint else ""
    message = f"{error.message}{where}." + hint + (f" {advice}" if advice else "")
    return QueryFailed(message, code=code, sqlstate=error.sqlstate, detail=detail)


def _result_error(res: pq.PGresult, encoding: str) -> _PgError:
    def get(f: pq.DiagnosticField) -> str | None:
        value = res.error_field(f)
        return value.decode(encoding, "replace") if value is not None else None

    message = get(pq.DiagnosticField.MESSAGE_PRIMARY) or (res.error_message.decode(encoding, "replace").strip() or "error")
    return _PgError(
        sqlstate=get(pq.DiagnosticField.SQLSTATE),
        message=message.splitlines()[0],
        hint=get(pq.DiagnosticField.MESSAGE_HINT),
        position=get(pq.DiagnosticField.STATEMENT_POSITION),
    )


def _exception_error(exc: psycopg.Error) -> _PgError:
    primary = exc.diag.message_primary if exc.sqlstate else None
    return _PgError(exc.sqlstate, (primary or "the session to the database failed").splitlines()[0], exc.diag.message_hint)


def _connect_failed(exc: Exception, tenant: TenantLogin) -> QueryFailed:
    """A connection failure, told without the DSN (host, port) or the password."""
    text = str(exc)
    if "password authentication failed" in text or "authentication failed" in text:
        why = "the stored reader password was refused; provisioning the tenant again renews it"
    elif "too many connections" in text:
        why = "the reader role has reached its connection limit; try again shortly"
    elif "does not exist" in text and "role" in text:
        why = "the reader role does not exist; the tenant may have been torn down"
    else:
        why = "the database server could not be reached"
    log.warning("query session for %s could not connect: %s", tenant.domain, exc)
    return QueryFailed(f"Could not open a query session for {tenant.domain!r}: {why}.", code="INTERNAL_ERROR")


# --- values ------------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """A value as JSON can carry it (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
        if value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)


def _text_fallback(base: type) -> type:
    """A date/time loader that returns PostgreSQL's text where Python cannot hold the value (infinity, year 10000)."""

    def load(self, data):
        try:
            return base.load(self, data)
        except (psycopg.DataError, ValueError, OverflowError):
            return bytes(data).decode("utf-8", "replace")

    return type(f"Safe{base.__name__}", (base,), {"load": load})


_LOADERS = {
    "date": _text_fallback(DateLoader),
    "time": _text_fallback(TimeLoader),
    "timetz": _text_fallback(TimetzLoader),
    "timestamp": _text_fallback(TimestampLoader),
    "timestamptz": _text_fallback(TimestamptzLoader),
    "interval": TextLoader,  # a timedelta cannot hold months
}


# --- one session -----------------------------------------------------------------------------------


async def _wait_fd(fd: int, *, write: bool = False) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def _flush(pgconn: pq.PGconn) -> None:
    while pgconn.flush():
        await _wait_fd(pgconn.socket, write=True)
        pgconn.consume_input()


async def _next_result(pgconn: pq.PGconn) -> pq.PGresult | None:
    """The next result of the statement in flight, None after the last one. Raises OperationalError if the session dies."""
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            return pgconn.get_result()
        await _wait_fd(pgconn.socket)


@dataclass
class _Fetched:
    columns: list[tuple[str, int, int]] = field(default_factory=list)  # (name, type oid, type modifier)
    rows: list[list[Any]] = field(default_factory=list)
    truncated_reason: str | None = None
    error: _PgError | None = None
    broken: bool = False  # the session cannot be reused (it died after an error, or a cap's cancel did not settle)


class _Unusable(Exception):
    """The session is in a state it cannot be reset from (COPY, a protocol surprise): close it."""


async def _fetch(conn: psycopg.AsyncConnection, statement: str, max_rows: int, max_bytes: int) -> _Fetched:
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    # The extended protocol: one statement, no parameters, text results.
    pgconn.send_query_params(statement.encode(encoding), None, result_format=_TEXT)
    if psycopg.capabilities.has_stream_chunked():
        pgconn.set_chunked_rows_mode(min(_CHUNK_ROWS, max_rows + 1))
    else:
        pgconn.set_single_row_mode()
    await _flush(pgconn)
    out = _Fetched()
    loaders: list[Any] = []
    size = 2  # the brackets of the rows array
    try:
        while (res := await _next_result(pgconn)) is not None:
            status = res.status
            if status in _ROW_STATUSES:
                if not out.columns and res.nfields:
                    out.columns = [
                        ((res.fname(i) or b"").decode(encoding, "replace"), res.ftype(i), res.fmod(i))
                        for i in range(res.nfields)
                    ]
                    loaders = [_loader(conn, oid) for _, oid, _ in out.columns]
                for r in range(res.ntuples):
                    if len(out.rows) >= max_rows:
                        out.truncated_reason = "rows"
                        break
                    row = [_value(loaders[c], res.get_value(r, c), encoding) for c in range(res.nfields)]
                    size += len(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()) + 1
                    if size > max_bytes:
                        out.truncated_reason = "bytes"
                        break
                    out.rows.append(row)
                if out.truncated_reason:
                    out.broken = not await _stop(conn)
                    return out
            elif status == pq.ExecStatus.FATAL_ERROR:
                out.error = out.error or _result_error(res, encoding)
            elif status in _COPY_STATUSES:
                raise _Unusable("COPY is not available through the query path; a SELECT returns the rows")
            elif status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY, pq.ExecStatus.NONFATAL_ERROR):
                raise _Unusable(f"unexpected result status {pq.ExecStatus(status).name}")
    except psycopg.OperationalError:
        if out.error is None:
            raise
        out.broken = True  # e.g. pg_terminate_backend(pg_backend_pid()): the error came, then the session ended
    return out


def _loader(conn: psycopg.AsyncConnection, oid: int):
    cls = conn.adapters.get_loader(oid, _TEXT) or conn.adapters.get_loader(0, _TEXT)
    return cls(oid, conn)


def _value(loader, data: bytes | None, encoding: str) -> Any:
    if data is None:
        return None
    try:
        return json_safe(loader.load(data))
    except Exception:  # noqa: BLE001 - a value Python cannot load still has PostgreSQL's text
        return bytes(data).decode(encoding, "replace")


async def _stop(conn: psycopg.AsyncConnection, timeout: float = 5.0) -> bool:
    """Cancel the statement still sending rows and read what is in flight; True if the session settled."""
    if conn.pgconn.transaction_status != _ACTIVE:
        return True
    try:
        await conn.cancel_safe(timeout=timeout)
        async with asyncio.timeout(timeout):
            while await _next_result(conn.pgconn) is not None:
                pass
    except (psycopg.Error, TimeoutError) as exc:
        log.warning("a capped query did not stop cleanly; its session is closed: %s", exc)
        return False
    return conn.pgconn.transaction_status != _ACTIVE


def _registry_name(conn: psycopg.AsyncConnection, oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info else f"oid {oid}"


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
            for name, loader in _LOADERS.items():
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
            raise _mapped(fetched.error, self.statement_timeout)
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
                return await asyncio.to_thread(check_sql, sql_text, tenant.schema)
            return check_sql(sql_text, tenant.schema)
        except SqlRejected as exc:
            raise QueryRejected(exc.reason, rule=exc.rule) from None

    async def _attempt(
        self, pool: _TenantPool, tenant: TenantLogin, statement: str, cap: int, *, may_retry: bool
    ) -> tuple[_Fetched, list[dict[str, str]]] | None:
        """The statement on one session of the pool; None if a pooled session was found dead before it was sent."""
        try:
            conn, fresh = await pool.acquire(self.acquire_timeout)
        except psycopg.OperationalError as exc:
            raise _connect_failed(exc, tenant) from None
        reusable = False
        try:
            try:
                await self._begin(conn, tenant)
            except psycopg.OperationalError as exc:
                if may_retry and not fresh:
                    log.info("a pooled query session of %s had gone away; opening a new one", tenant.domain)
                    return None
                raise QueryFailed(
                    f"The query session was lost before the query started ({_exception_error(exc).message}); try again."
                ) from None
            except psycopg.Error as exc:
                raise _mapped(_exception_error(exc), self.statement_timeout) from None
            try:
                fetched = await _fetch(conn, statement, cap, self.max_bytes)
            except _Unusable as exc:
                raise QueryFailed(f"{exc}.", code="VALIDATION_ERROR") from None
            except UnicodeEncodeError:
                raise QueryRejected(
                    f"The SQL has characters the database's encoding ({conn.info.encoding}) cannot hold.", rule="encoding"
                ) from None
            except psycopg.OperationalError as exc:
                raise QueryFailed(
                    f"The query session ended while the query ran ({_exception_error(exc).message}); try again."
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

    async def _settle(self, conn: psycopg.AsyncConnection, fetched: _Fetched) -> tuple[list[dict[str, str]], bool]:
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
            names = [_registry_name(conn, oid) for _, oid, _ in fetched.columns]
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
