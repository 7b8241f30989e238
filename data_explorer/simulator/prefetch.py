"""Rendering the next Case API page while the client is still reading this one.

Cursor paging makes the next request predictable: its URL is in the page just
served. One worker thread renders that page ahead; when the request comes, it
takes the result (waiting for it if need be). The key holds the data version,
so a mutation in between makes the prefetched page unreachable, never wrong.
The bytes are the same as without prefetching; only the waiting is shorter.
"""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

PENDING = 4


class Prefetcher:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: OrderedDict[tuple, Future] = OrderedDict()
        self.hits = 0  # requests answered with a page rendered ahead

    def submit(self, key: tuple, compute: Callable[[], Any]) -> None:
        if key in self._pending:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulator-prefetch")
        self._pending[key] = self._pool.submit(compute)
        while len(self._pending) > PENDING:
            self._pending.popitem(last=False)[1].cancel()

    def take(self, key: tuple) -> Future | None:
        future = self._pending.pop(key, None)
        self.hits += future is not None
        return future

    def clear(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    def close(self) -> None:
        self.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
