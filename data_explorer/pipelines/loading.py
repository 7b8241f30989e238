"""Loading one source: batches in, rows and checkpoint committed together.

Each batch is one transaction: child rows of the batch's parents deleted,
rows upserted by primary key, checkpoint advanced. A full pass ends by deleting
rows it did not write. Killed anywhere, the next run resumes after the last
committed batch with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import psycopg

from data_explorer.loaders.batch import SourceLoader
from data_explorer.loaders.errors import LoaderError
from data_explorer.pipelines.prefetch import prefetch
from data_explorer.pipelines.registry import Source
from data_explorer.warehouse.batches import delete_children, delete_stale, upsert_rows
from data_explorer.warehouse.checkpoints import read_checkpoint, start_pass, write_checkpoint
from data_explorer.warehouse.storable import storable, storable_rows


@dataclass
class SourceProgress:
    source: str
    mode: str
    rows: int = 0
    fetched: int = 0
    total: int | None = None
    deleted: int = 0
    replaced: int = 0  # characters PostgreSQL cannot store, replaced with U+FFFD
    seconds: float = 0.0


def _write_batch(conn, raw_schema: str, source: Source, loader: SourceLoader, batch, cp) -> tuple:
    """One transaction: children of re-sent parents deleted, rows upserted, checkpoint advanced."""
    tables = {t.name: t for t in source.tables}
    try:
        with conn.transaction():
            for table in source.tables:
                if table.parent is not None:
                    delete_children(conn, raw_schema, table, batch.parents)
            written = 0
            for name, rows in batch.rows.items():
                count = upsert_rows(conn, raw_schema, tables[name], loader.produces[name], rows, cp.generation)
                if tables[name].parent is None:
                    written += count
            cp = replace(cp, cursor=batch.cursor, rows_total=cp.rows_total + written)
            write_checkpoint(conn, raw_schema, cp)
    except (psycopg.errors.UntranslatableCharacter, psycopg.errors.CharacterNotInRepertoire):
        raise
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise LoaderError(
            f"{source.name}: PostgreSQL refused a value from the API ({str(exc).splitlines()[0]}); "
            "nothing of this batch was kept"
        ) from None
    return cp, written


def load_source(
    conn: psycopg.Connection,
    raw_schema: str,
    source: Source,
    loader: SourceLoader,
    *,
    full: bool,
    on_batch: Callable[[SourceProgress], None],
) -> SourceProgress:
    started = time.monotonic()
    with conn.transaction():
        previous = read_checkpoint(conn, raw_schema, source.name)
    cp = start_pass(previous, source.name, full=full or not source.incremental)
    if cp.full_pending and previous is not None and previous.full_pending:
        mode = "full (resumed)"
    else:
        mode = "full" if cp.full_pending else "incremental"
    progress = SourceProgress(source.name, mode)
    tables = {t.name: t for t in source.tables}
    for batch in prefetch(loader.batches(cp.cursor)):
        try:
            cp, written = _write_batch(conn, raw_schema, source, loader, batch, cp)
        except (UnicodeEncodeError, psycopg.errors.UntranslatableCharacter, psycopg.errors.CharacterNotInRepertoire):
            # a character PostgreSQL cannot store: write the batch again with it replaced
            rows, replaced = {}, 0
            for name, table_rows in batch.rows.items():
                types = [tables[name].column(c).type for c in loader.produces[name]]
                rows[name], n = storable_rows(table_rows, types)
                replaced += n
            progress.replaced += replaced
            parents = [storable(p)[0] for p in batch.parents]
            cp, written = _write_batch(conn, raw_schema, source, loader, replace(batch, rows=rows, parents=parents), cp)
        progress.rows += written
        progress.fetched += batch.fetched
        progress.total = batch.total if batch.total is not None else progress.total
        progress.seconds = time.monotonic() - started
        on_batch(progress)
    if cp.full_pending:
        with conn.transaction():
            progress.deleted = sum(delete_stale(conn, raw_schema, t, cp.generation) for t in source.tables if t.parent is None)
            for t in source.tables:
                if t.parent is not None:
                    delete_stale(conn, raw_schema, t, cp.generation)
            write_checkpoint(conn, raw_schema, replace(cp, full_pending=False))
    progress.seconds = time.monotonic() - started
    return progress
