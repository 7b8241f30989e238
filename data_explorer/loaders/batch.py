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
    total: int | None  # what the source says it holds, when it says


class SourceLoader(Protocol):
    produces: dict[str, tuple[str, ...]]  # raw table -> the order of the values in its rows

    def batches(self, cursor: dict[str, Any] | None) -> Iterator[Batch]: ...
