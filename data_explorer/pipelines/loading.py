"""Loading one source: batches in, rows and checkpoint committed together.

Each batch is one transaction: child rows of the batch's parents deleted,
rows upserted by primary key, checkpoint advanced. A full pass ends by deleting
rows it did not write. Killed anywhere, the next run resumes after the last
committed batch with nothing lost and nothing duplicated.

The prefetch thread fetches, parses and converts the next pages while batches
are sent (psycopg formats the rows for binary COPY in its compiled code). With two
writer sessions, PostgreSQL writes a batch while it still writes the one before
(the loader's limit is PostgreSQL parsing, indexing and logging rows in one
session); batches that share a key are written one after the other, and
commits keep the order of the batches.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import psycopg

from data_explorer.loaders.batch import Batch, SourceLoader
from data_explorer.loaders.errors import LoaderError
from data_explorer.loaders.prefetch import prefetch
from data_explorer.pipelines.registry import Source, Table
from data_explorer.warehouse.batches import (
    StagedRows, Unencodable, any_stored, copy_rows, count_rows, create_stage, delete_children, delete_stale, merge_stage, prefer_lz4,
    stage_rows,
)
from data_explorer.warehouse.checkpoints import read_checkpoint, start_pass, write_checkpoint
from data_explorer.warehouse.storable import any_unstorable, storable, storable_rows


@dataclass
class SourceProgress:
    source: str
    mode: str
    rows: int = 0  # rows of the top tables inserted or changed
    fetched: int = 0
    total: int | None = None
    deleted: int = 0
    replaced: int = 0  # characters PostgreSQL cannot store, replaced with U+FFFD
    seconds: float = 0.0
    reread: int = 0  # records the look-back window behind the cursor read again
    reread_new: int = 0  # of those, the ones not already stored as they are (indexed late, or changed)
    counts: "Counts | None" = None  # the last full pass's records set beside what the server reported

    @property
    def full_pass(self) -> bool:
        return self.mode != "incremental"


@dataclass(frozen=True)
class Counts:
    """After a full pass: what the server said it holds, the distinct records the pass wrote, and the rows
    stored now. Fewer stored than the server reported means records were not received."""

    server: int | None
    received: int
    stored: int

    @property
    def missing(self) -> int:
        return max(0, self.server - self.stored) if self.server is not None else 0

    def as_dict(self) -> dict[str, int | None]:
        return {"server": self.server, "received": self.received, "stored": self.stored, "missing": self.missing}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Counts | None":
        try:
            return cls(data["server"], data["received"], data["stored"]) if data else None
        except (KeyError, TypeError):
            return None  # written by another version: the next full pass writes it again


# PostgreSQL refuses NUL and lone surrogates in text and jsonb; psycopg refuses some before sending
# (a lone surrogate in a key cannot even be encoded for the query that looks the key up)
UNSTORABLE = (psycopg.errors.UntranslatableCharacter, psycopg.errors.CharacterNotInRepertoire, Unencodable, UnicodeEncodeError)


def _stage_batch(batch: Batch, tables: dict[str, Table], produces: dict[str, tuple[str, ...]], generation: int) -> dict[str, StagedRows]:
    return {name: stage_rows(tables[name], produces[name], rows, generation) for name, rows in batch.rows.items() if rows}


def _storable_batch(batch: Batch, tables: dict[str, Table], produces: dict[str, tuple[str, ...]]) -> tuple[Batch, int]:
    """The batch with the characters PostgreSQL cannot store replaced; and how many were."""
    rows, replaced = {}, 0
    for name, table_rows in batch.rows.items():
        rows[name], n = storable_rows(table_rows, [tables[name].column(c).type for c in produces[name]])
        replaced += n
    return replace(batch, rows=rows, parents=[storable(p)[0] for p in batch.parents]), replaced


@dataclass(frozen=True)
class _Into:
    """Where one source's batches go."""

    raw_schema: str
    source: Source
    tables: dict[str, Table]
    produces: dict[str, tuple[str, ...]]  # raw table -> the loader's order of its values
    # the pass began with its tables empty: a key is stored only if this pass wrote it before (a record
    # sent again), so batches are first written as new, unchecked; the primary keys catch a repeat
    fresh: bool = False


class _KeyStored(Exception):
    """A batch written as new met a key already stored: it is written again, checked."""


def _any_rows(conn, raw_schema: str, tables: Sequence[Table]) -> bool:
    with conn.transaction():
        return any(any_stored(conn, raw_schema, t) for t in tables)


def _parents_stored(conn, raw_schema: str, parent: Table, keys: list[str], cleared: dict[str, set]) -> bool:
    """Whether any of these parents may have child rows stored; when none is stored, records in ``cleared``
    that the parent table holds none of them.

    Child rows are written and deleted only in the transaction that writes or deletes their parent,
    with its generation, so a parent that is not stored has none. Asking the parent table (one
    index probe per key) spares deleting by key from the child table, which is several times larger.
    """
    if not keys or len(parent.primary_key) != 1:
        return bool(keys)
    if parent.name in cleared:
        return not cleared[parent.name].issuperset(keys)
    if any_stored(conn, raw_schema, parent, keys):
        return True
    cleared[parent.name] = set(keys)
    return False


def _clear_children(conn, into: _Into, parents: list[str]) -> dict[str, set]:
    """Delete the stored children of these parents; return, by table, the leading keys no row holds now."""
    cleared: dict[str, set] = {}
    for table in into.source.tables:
        if table.parent is None:
            continue
        if _parents_stored(conn, into.raw_schema, into.tables[table.parent.table], parents, cleared):
            delete_children(conn, into.raw_schema, table, parents)
        if table.primary_key[0] == table.parent.key:
            cleared[table.name] = set(parents)
    return cleared


def _write_batch(conn, into: _Into, batch: Batch, staged: dict[str, StagedRows], cp, before: Future | None,
                 *, as_new: bool = False) -> int:
    """One transaction: children of re-sent parents deleted, rows copied and upserted; then, once the
    batch ``before`` it has committed, the checkpoint advanced and committed. ``as_new``: no key is
    looked up, every row is copied straight in, and a key already stored raises _KeyStored.
    Returns how many rows of the source's top tables were inserted or changed.

    The upserts go in one pipeline: one round trip instead of one each. The checkpoint is written
    only after the batch before has committed, so neither session ever waits for the other's lock,
    and commits keep the order of the batches: what is committed is always a prefix of the pass.
    """
    raw_schema, source, tables, produces = into.raw_schema, into.source, into.tables, into.produces
    try:
        with conn.transaction():
            cleared = {} if as_new else _clear_children(conn, into, batch.parents)  # table -> keys no row holds now
            written = {name: rows.count for name, rows in staged.items()}
            merges = [name for name, rows in staged.items()
                      if copy_rows(conn, raw_schema, tables[name], produces[name], rows, cleared.get(name, ()), as_new=as_new)]
            if merges:
                with conn.pipeline():
                    merged = {name: merge_stage(conn, raw_schema, tables[name], produces[name]) for name in merges}
                written.update((name, cursor.rowcount) for name, cursor in merged.items())
            if before is not None:
                before.result()  # raises if that batch failed: this one rolls back with it
            write_checkpoint(conn, raw_schema, cp)
        return sum(n for name, n in written.items() if tables[name].parent is None)
    except UNSTORABLE:
        raise
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        if as_new and isinstance(exc, psycopg.errors.UniqueViolation):
            raise _KeyStored() from None
        raise LoaderError(
            f"{source.name}: PostgreSQL refused a value from the API ({str(exc).splitlines()[0]}); "
            "nothing of this batch was kept"
        ) from None


def _write(conn, into: _Into, batch: Batch, staged: dict[str, StagedRows], cp, before: Future | None) -> tuple[int, int]:
    """Write a batch; when PostgreSQL refuses a character in it, write it again with those replaced.
    Returns how many characters were replaced, and how many top-table rows were inserted or changed."""
    try:
        try:
            return 0, _write_batch(conn, into, batch, staged, cp, before, as_new=into.fresh)
        except _KeyStored:
            return 0, _write_batch(conn, into, batch, staged, cp, before)
    except UNSTORABLE:
        pass
    batch, replaced = _storable_batch(batch, into.tables, into.produces)
    try:
        return replaced, _write_batch(conn, into, batch, _stage_batch(batch, into.tables, into.produces, cp.generation), cp, before)
    except Unencodable as exc:
        raise LoaderError(
            f"{into.source.name}: a value from the API cannot be sent to PostgreSQL ({exc}); nothing of this batch was kept"
        ) from None


@dataclass
class _InFlight:
    future: Future
    session: psycopg.Connection
    keys: frozenset
    fetched: int
    total: int | None
    reread: int


def _leading_keys(batch: Batch, staged: dict[str, StagedRows]) -> frozenset:
    """The values of the first key column a batch writes (its parents' too), also as they are once
    unstorable characters are replaced: batches sharing none touch no common row and can be written
    at the same time."""
    keys = set(batch.parents)
    for rows in staged.values():
        keys.update(rows.leading_keys)
    texts = [k for k in keys if isinstance(k, str)]
    if any_unstorable(texts):  # rare: a key per row replaced only then
        keys.update([storable(k)[0] for k in texts])
    return frozenset(keys)


def _wait_all(futures: list[Future]) -> None:
    """Until every write has ended, even through a second stop request: no thread may still use a
    session when the caller goes on to close it."""
    interrupted: BaseException | None = None
    while True:
        try:
            wait(futures)
            break
        except BaseException as exc:  # RunCancelled or KeyboardInterrupt, raised by a signal
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


@contextmanager
def _no_cyclic_collection() -> Iterator[None]:
    """Each page parses into hundreds of thousands of acyclic objects, freed by reference counting; the
    cyclic collector would only walk them over and over (about 6% of a load). What little cyclic garbage
    a load makes (some 50 objects a page, from the HTTP and PostgreSQL clients) waits until it ends.

    The collector is the whole process's: a run in a thread of a process serving other work (the
    gateway) only makes collections rarer."""
    previous = gc.get_threshold()
    was_enabled = gc.isenabled()
    alone = threading.current_thread() is threading.main_thread()
    if alone:
        gc.disable()
    else:
        gc.set_threshold(100_000, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        if alone and was_enabled:
            gc.enable()


def load_source(
    sessions: Sequence[psycopg.Connection],
    raw_schema: str,
    source: Source,
    loader: SourceLoader,
    *,
    full: bool,
    on_batch: Callable[[SourceProgress], None],
) -> SourceProgress:
    """Load one source over the writer's sessions: with two, a batch is written while the one before
    it is still being written (PostgreSQL parsing, indexing and logging it), unless they share a key."""
    started = time.monotonic()
    tables, produces = {t.name: t for t in source.tables}, loader.produces
    conn = sessions[0]
    for session in sessions:
        with session.transaction():
            prefer_lz4(session)
            for name, names in produces.items():
                create_stage(session, raw_schema, tables[name], names)
    with conn.transaction():
        previous = read_checkpoint(conn, raw_schema, source.name)
    cp = start_pass(previous, source.name, full=full or not source.incremental)
    if cp.full_pending and previous is not None and previous.full_pending:
        mode = "full (resumed)"
    else:
        mode = "full" if cp.full_pending else "incremental"
    progress = SourceProgress(source.name, mode)
    # what a full pass does not write is deleted at its end, by a scan of every table; a pass that
    # began with the tables empty has nothing to delete (a resumed one may have met older rows)
    stale = mode != "full" or _any_rows(conn, raw_schema, source.tables)
    into = _Into(raw_schema, source, tables, produces, fresh=not stale)
    generation = cp.generation  # the prefetch thread stages rows with it: fixed for the pass
    ahead = prefetch((batch, _stage_batch(batch, tables, produces, generation)) for batch in loader.batches(cp.cursor))
    in_flight: deque[_InFlight] = deque()

    def finish_oldest() -> None:
        done = in_flight.popleft()
        replaced, changed = done.future.result()
        progress.rows += changed  # rows inserted or changed: a record received again as stored is not one
        progress.replaced += replaced
        if done.reread:
            progress.reread += done.reread
            progress.reread_new += changed
        progress.fetched += done.fetched
        progress.total = done.total if done.total is not None else progress.total
        progress.seconds = time.monotonic() - started
        on_batch(progress)

    with _no_cyclic_collection(), ThreadPoolExecutor(len(sessions), thread_name_prefix="writer") as pool:
        try:
            for batch, staged in ahead:
                keys = _leading_keys(batch, staged)
                while in_flight and (len(in_flight) == len(sessions) or any(keys & f.keys for f in in_flight)):
                    finish_oldest()
                busy = {id(f.session) for f in in_flight}
                session = next(s for s in sessions if id(s) not in busy)
                written = sum(rows.count for name, rows in staged.items() if tables[name].parent is None)
                cp = replace(cp, cursor=batch.cursor, rows_total=cp.rows_total + written)
                before = in_flight[-1].future if in_flight else None
                future = pool.submit(_write, session, into, batch, staged, cp, before)
                in_flight.append(_InFlight(future, session, keys, batch.fetched, batch.total, batch.reread))
            while in_flight:
                finish_oldest()
        finally:
            ahead.close()  # stops the thread ahead
            _wait_all([f.future for f in in_flight])
    if cp.full_pending:
        tops = [t for t in source.tables if t.parent is None]
        with conn.transaction():
            received = sum(count_rows(conn, raw_schema, t, cp.generation) for t in tops)
            if stale:
                progress.deleted = sum(delete_stale(conn, raw_schema, t, cp.generation) for t in tops)
                for t in source.tables:
                    if t.parent is not None:
                        delete_stale(conn, raw_schema, t, cp.generation)
            stored = sum(count_rows(conn, raw_schema, t) for t in tops) if stale else received
            # a resumed pass's first page counted only what remained from where it resumed
            counts = Counts(progress.total if mode == "full" else None, received, stored)
            cp = replace(cp, full_pending=False, counts=counts.as_dict())
            write_checkpoint(conn, raw_schema, cp)
    progress.counts = Counts.from_dict(cp.counts)
    progress.seconds = time.monotonic() - started
    return progress
