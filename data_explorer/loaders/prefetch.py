"""Run an iterator in a background thread, a bounded number of items ahead.

Fetching the next page overlaps with writing the current one, while at most
``depth`` pages wait in memory. An exception in the producer is raised in the
consumer; closing the consumer stops the producer at its next item, waiting at
most ``STOP_GRACE`` seconds for it.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()
STOP_GRACE = 10.0  # seconds a stopping consumer waits for the producer's current item


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((True, _DONE))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put((False, exc))

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, item = buffer.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        deadline = time.monotonic() + STOP_GRACE
        while worker.is_alive() and time.monotonic() < deadline:  # drain so a blocked producer sees the stop
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)
        # a producer still inside a request is a daemon thread: it is abandoned, not waited for
