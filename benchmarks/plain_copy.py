"""The plain loader the issue's yardstick speaks of: pipelined fetch-and-COPY, nothing else.

One thread downloads and parses the pages (the fetch-only client's paging) and
turns each record back into one JSON text; the caller's thread COPYs them into
a table of (id, doc jsonb) per kind, one commit per page. No checks of what the
API sent, no keys or upserts, no case blocks, no checkpoints: what a loader
costs before it does any of the work that makes the data usable and a re-run
safe. Measured beside ours to show what that work costs.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import httpx
import orjson
import psycopg
from loader import AUTH, pages, rates
from psycopg import sql

ID_FIELD = {"cases": "case_id", "forms": "id"}


def _ahead(base: str, errors: list) -> Iterator[tuple[str, list]]:
    """The pages, converted in a thread of their own, one page ahead."""
    waiting: queue.Queue = queue.Queue(maxsize=1)

    def produce() -> None:
        try:
            with httpx.Client(headers=AUTH, timeout=120) as client:
                for kind, records, _ in pages(client, base):
                    waiting.put((kind, [(r[ID_FIELD[kind]], orjson.dumps(r).decode()) for r in records]))
        except Exception as exc:  # reported by the consumer
            errors.append(exc)
        finally:
            waiting.put(None)

    threading.Thread(target=produce, daemon=True).start()
    while (item := waiting.get()) is not None:
        yield item


def plain_copy(base: str, dsn: str) -> dict[str, float]:
    """cases_per_s and forms_per_s of the plain loader into a scratch schema of ``dsn`` (dropped after)."""
    schema = sql.Identifier("plain_copy")
    errors: list = []
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(schema))
        for kind in ID_FIELD:
            conn.execute(sql.SQL("CREATE TABLE {}.{} (id text, doc jsonb)").format(schema, sql.Identifier(kind)))
        conn.commit()

        def copied() -> Iterator[tuple[str, list]]:
            for kind, rows in _ahead(base, errors):
                with conn.cursor().copy(sql.SQL("COPY {}.{} (id, doc) FROM STDIN").format(schema, sql.Identifier(kind))) as copy:
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
                yield kind, rows

        try:
            result = rates(copied())
        finally:
            conn.rollback()
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
            conn.commit()
    if errors:
        raise RuntimeError(f"plain fetch-and-COPY failed: {errors[0]}")
    return result
