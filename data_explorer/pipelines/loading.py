"""Loading one source: batches in, rows and checkpoint committed together.

Each batch is one transaction: child rows of the batch's parents deleted,
rows upserted by primary key, checkpoint advanced. A full pass ends by deleting
rows it did not write. Killed anywhere, the next run resumes after the last
committed batch with nothing lost and nothing duplicated.

The prefetch thread fetches, parses and formats the next batch as COPY text
while this thread sends the current one, so PostgreSQL waits on no Python work.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import psycopg

from data_explorer.loaders.batch import Batch, SourceLoader
from data_explorer.loaders.errors import LoaderError
from data_explorer.pipelines.prefetch import prefetch
from data_explorer.pipelines.registry import Source, Table
from data_explorer.warehouse.batches import (
    StagedRows, copy_rows, create_stage, delete_children, delete_stale, merge_stage, prefer_lz4, stage_rows,
)
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


# PostgreSQL refuses NUL and lone surrogates in text and jsonb
UNSTORABLE = (psycopg.errors.UntranslatableCharacter, psycopg.errors.CharacterNotInRepertoire)


def _stage_batch(batch: Batch, tables: dict[str, Table], produces: dict[str, tuple[str, ...]], generation: int) -> dict[str, StagedRows]:
    return {name: stage_rows(tables[name], produces[name], rows, generation) for name, rows in batch.rows.items() if rows}


def _stage_ahead(batch: Batch, tables: dict[str, Table], produces: dict[str, tuple[str, ...]], generation: int) -> dict[str, StagedRows] | None:
    """The batch's rows as COPY text, formatted in the prefetch thread; None when a value cannot be encoded."""
    try:
        return _stage_batch(batch, tables, produces, generation)
    except UnicodeEncodeError:
        return None


def _storable_batch(batch: Batch, tables: dict[str, Table], produces: dict[str, tuple[str, ...]]) -> tuple[Batch, int]:
    """The batch with the characters PostgreSQL cannot store replaced; and how many were."""
    rows, replaced = {}, 0
    for name, table_rows in batch.rows.items():
        rows[name], n = storable_rows(table_rows, [tables[name].column(c).type for c in produces[name]])
        replaced += n
    return replace(batch, rows=rows, parents=[storable(p)[0] for p in batch.parents]), replaced


def _write_batch(conn, raw_schema: str, source: Source, produces, batch: Batch, staged: dict[str, StagedRows], cp) -> tuple:
    """One transaction: children of re-sent parents deleted, rows copied and upserted, checkpoint advanced.

    The statements after the COPYs go in one pipeline: one round trip instead of one each.
    """
    tables = {t.name: t for t in source.tables}
    try:
        with conn.transaction():
            cleared: dict[str, set] = {}  # child table -> the leading keys whose rows are now gone
            for table in source.tables:
                if table.parent is not None:
                    delete_children(conn, raw_schema, table, batch.parents)
                    if table.primary_key[0] == table.parent.key:
                        cleared[table.name] = set(batch.parents)
            merges = [name for name, rows in staged.items()
                      if copy_rows(conn, raw_schema, tables[name], produces[name], rows, cleared.get(name, ()))]
            with conn.pipeline():
                for name in merges:
                    merge_stage(conn, raw_schema, tables[name], produces[name])
                written = sum(rows.count for name, rows in staged.items() if tables[name].parent is None)
                cp = replace(cp, cursor=batch.cursor, rows_total=cp.rows_total + written)
                write_checkpoint(conn, raw_schema, cp)
    except UNSTORABLE:
        raise
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise LoaderError(
            f"{source.name}: PostgreSQL refused a value from the API ({str(exc).splitlines()[0]}); "
            "nothing of this batch was kept"
        ) from None
    return cp, written


@contextmanager
def _fewer_collections(threshold: int = 100_000) -> Iterator[None]:
    """Each page parses into hundreds of thousands of acyclic objects; at the default threshold (700
    allocations) the cyclic collector walks them over and over, for nothing."""
    previous = gc.get_threshold()
    gc.set_threshold(threshold, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


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
    tables, produces = {t.name: t for t in source.tables}, loader.produces
    with conn.transaction():
        previous = read_checkpoint(conn, raw_schema, source.name)
        prefer_lz4(conn)
        for name, names in produces.items():
            create_stage(conn, raw_schema, tables[name], names)
    cp = start_pass(previous, source.name, full=full or not source.incremental)
    if cp.full_pending and previous is not None and previous.full_pending:
        mode = "full (resumed)"
    else:
        mode = "full" if cp.full_pending else "incremental"
    progress = SourceProgress(source.name, mode)
    generation = cp.generation  # the prefetch thread stages rows with it: fixed for the pass
    ahead = ((batch, _stage_ahead(batch, tables, produces, generation)) for batch in loader.batches(cp.cursor))
    with _fewer_collections():
        for batch, staged in prefetch(ahead):
            written = None
            if staged is not None:
                try:
                    cp, written = _write_batch(conn, raw_schema, source, produces, batch, staged, cp)
                except UNSTORABLE:
                    pass
            if written is None:  # a character PostgreSQL cannot store: write the batch again with it replaced
                batch, replaced = _storable_batch(batch, tables, produces)
                progress.replaced += replaced
                cp, written = _write_batch(conn, raw_schema, source, produces, batch, _stage_batch(batch, tables, produces, cp.generation), cp)
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
