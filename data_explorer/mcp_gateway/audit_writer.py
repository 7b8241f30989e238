"""Audit rows written over a few long-lived connections of the audit login role.

Opening a connection per call costs a SCRAM handshake and a backend start, more
than the insert itself; under many concurrent calls that queued the calls. A
connection that breaks is dropped and the row retried once on a new one.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from data_explorer.warehouse.audit import AuditEntry, record_call

log = logging.getLogger(__name__)


class AuditWriter:
    def __init__(self, conninfo: str, control: str, size: int = 4):
        self._conninfo, self._control = conninfo, control
        self._idle: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
        self._slots = asyncio.Semaphore(size)

    @property
    def conninfo(self) -> str:
        return self._conninfo

    async def write(self, entry: AuditEntry) -> None:
        async with self._slots:
            for attempt in (1, 2):
                conn = await self._take()
                try:
                    await record_call(conn, self._control, entry)
                except psycopg.OperationalError:
                    await conn.close()
                    if attempt == 2:
                        raise
                    continue  # the server closed it (restart, idle timeout): once more on a new one
                self._idle.put_nowait(conn)
                return

    async def _take(self) -> psycopg.AsyncConnection:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if not conn.closed:
                return conn
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    async def close(self) -> None:
        while not self._idle.empty():
            await self._idle.get_nowait().close()
