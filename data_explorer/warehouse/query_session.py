"""One statement on one query session, over libpq directly.

The statement goes over the extended protocol (Parse/Bind/Execute), which carries
exactly one statement: ``SELECT 1; DELETE ...`` is refused by the server ("cannot
insert multiple commands into a prepared statement"). psycopg uses the simple
protocol for a query without parameters, so the statement is sent here with
``PGconn.send_query_params`` directly.

Rows arrive in chunks of a few rows (libpq chunked-rows mode, single-row mode on
older libpq), so a large result is never held whole: reading stops at
``max_rows + 1`` rows or when the rows' JSON passes ``max_bytes``, and the
statement is then cancelled. A chunk is measured only once libpq holds all of
it, so the chunk is small: memory per query stays within about ``_CHUNK_ROWS``
times the byte cap whatever the rows (larger chunks were no faster for results
under the cap). A single value is still read whole by libpq before it can be
measured (up to PostgreSQL's 1 GB per value).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq

from data_explorer.warehouse.query_errors import PgError, result_error
from data_explorer.warehouse.query_values import load_value, value_loader

log = logging.getLogger(__name__)

_CHUNK_ROWS = 4
_TEXT = pq.Format.TEXT
_ACTIVE = pq.TransactionStatus.ACTIVE
_ROW_STATUSES = (pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK, pq.ExecStatus.TUPLES_OK)
_COPY_STATUSES = (pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_BOTH)


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
class Fetched:
    columns: list[tuple[str, int, int]] = field(default_factory=list)  # (name, type oid, type modifier)
    rows: list[list[Any]] = field(default_factory=list)
    truncated_reason: str | None = None
    error: PgError | None = None
    broken: bool = False  # the session cannot be reused (it died after an error, or a cap's cancel did not settle)


class Unusable(Exception):
    """The session is in a state it cannot be reset from (COPY, a protocol surprise): close it."""


async def fetch_rows(conn: psycopg.AsyncConnection, statement: str, max_rows: int, max_bytes: int) -> Fetched:
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    # The extended protocol: one statement, no parameters, text results.
    pgconn.send_query_params(statement.encode(encoding), None, result_format=_TEXT)
    if psycopg.capabilities.has_stream_chunked():
        pgconn.set_chunked_rows_mode(min(_CHUNK_ROWS, max_rows + 1))
    else:
        pgconn.set_single_row_mode()
    await _flush(pgconn)
    out = Fetched()
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
                    loaders = [value_loader(conn, oid) for _, oid, _ in out.columns]
                for r in range(res.ntuples):
                    if len(out.rows) >= max_rows:
                        out.truncated_reason = "rows"
                        break
                    row = [load_value(loaders[c], res.get_value(r, c), encoding) for c in range(res.nfields)]
                    size += len(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()) + 1
                    if size > max_bytes:
                        out.truncated_reason = "bytes"
                        break
                    out.rows.append(row)
                if out.truncated_reason:
                    out.broken = not await stop_statement(conn)
                    return out
            elif status == pq.ExecStatus.FATAL_ERROR:
                out.error = out.error or result_error(res, encoding)
            elif status in _COPY_STATUSES:
                raise Unusable("COPY is not available through the query path; a SELECT returns the rows")
            elif status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY, pq.ExecStatus.NONFATAL_ERROR):
                raise Unusable(f"unexpected result status {pq.ExecStatus(status).name}")
    except psycopg.OperationalError:
        if out.error is None:
            raise
        out.broken = True  # e.g. pg_terminate_backend(pg_backend_pid()): the error came, then the session ended
    return out


async def stop_statement(conn: psycopg.AsyncConnection, timeout: float = 5.0) -> bool:
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
