"""The gateway's memory per query stays within a small multiple of the byte cap, whatever the rows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.security

# Peak memory of a fresh process reading capped results over the query path's own fetch.
PROBE = """
import asyncio, json, resource, sys
import psycopg
from data_explorer.warehouse.query_session import fetch_rows

async def main(url, statement, cap):
    conn = await psycopg.AsyncConnection.connect(url)
    await fetch_rows(conn, "SELECT 1", 10, cap)
    await conn.rollback()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fetched = await fetch_rows(conn, statement, 1000, cap)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grew_kb": after - before, "rows": len(fetched.rows), "why": fetched.truncated_reason}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.parametrize("row_bytes", [1_000_000, 100_000])
def test_memory_per_query_is_a_small_multiple_of_the_byte_cap(database_url, row_bytes):
    cap = 1 << 20
    statement = f"SELECT repeat('x', {row_bytes}) FROM generate_series(1, 150)"  # 150 MB or 15 MB of rows
    out = subprocess.run([sys.executable, "-c", PROBE, database_url, statement, str(cap)],
                         capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(out.stdout)
    assert seen["why"] == "bytes" and seen["rows"] <= cap // row_bytes
    assert seen["grew_kb"] * 1024 < 12 * cap, seen  # held a few rows at a time, never the result
