"""What a source loader yields: one batch of rows and the cursor after it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol


@dataclass(frozen=True)
class Batch:
    rows: dict[str, list[tuple]]  # raw table name -> rows, values in the loader's ``produces`` order
    parents: list[str]  # keys whose child rows this batch replaces
    cursor: dict[str, Any] | None  # incremental cursor after this batch
    fetched: int  # records received, including repeats that were skipped
    # what the server said it holds for this pass (at its first page; a source reading several lists
    # gives the sum of those it has begun), when it says: set beside what a full pass stored
    total: int | None
    # records re-read by the look-back window behind the cursor; a batch of such records holds only them,
    # so that the rows it writes are the ones the window found new
    reread: int = 0


class SourceLoader(Protocol):
    produces: dict[str, tuple[str, ...]]  # raw table -> the order of the values in its rows

    def batches(self, cursor: dict[str, Any] | None) -> Iterator[Batch]: ...
