"""The tenant lock: one PostgreSQL session advisory lock per tenant.

A runner holds it for its whole run; teardown (by the tool or the idle sweep)
holds it while dropping. Being a session lock, it is released by PostgreSQL
when the holder's connection ends, so a killed runner never leaves it behind.

The key is 64 bits of SHA-256 of the domain: with PostgreSQL's 32-bit
``hashtext`` a crafted project space name could share a victim's key and block
its runs; finding a 64-bit second preimage of SHA-256 is out of reach.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import Iterator

import psycopg


def lock_key(domain: str) -> int:
    """The tenant's advisory lock key: a signed 64-bit integer, as PostgreSQL takes it."""
    return int.from_bytes(hashlib.sha256(b"data-explorer tenant\0" + domain.encode()).digest()[:8], "big", signed=True)


def try_lock(conn: psycopg.Connection, domain: str) -> bool:
    return conn.execute("SELECT pg_try_advisory_lock(%s::bigint)", (lock_key(domain),)).fetchone()[0]


def unlock(conn: psycopg.Connection, domain: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (lock_key(domain),))


@contextlib.contextmanager
def tenant_lock(conn: psycopg.Connection, domain: str, *, wait: float = 0.0) -> Iterator[bool]:
    """Hold the tenant's lock on ``conn`` (autocommit) for the block; yields False if it could not be had."""
    deadline = time.monotonic() + wait
    got = try_lock(conn, domain)
    while not got and time.monotonic() < deadline:
        time.sleep(0.2)
        got = try_lock(conn, domain)
    try:
        yield got
    finally:
        if got and not conn.closed:
            try:
                unlock(conn, domain)
            except psycopg.OperationalError:
                # the session is gone (its backend was terminated, the server restarted), and the lock
                # with it: the work the block did stands, and an error here would only hide that
                pass


def held_by_someone(conn: psycopg.Connection, domain: str) -> bool:
    """Whether some session holds the tenant's lock (a runner is alive), without keeping it."""
    if try_lock(conn, domain):
        unlock(conn, domain)
        return False
    return True
