"""Run an iterator in a background thread, a bounded number of items ahead.

Fetching the next page overlaps with writing the current one, while at most
``depth`` pages wait in memory. An exception in the producer is raised in the
consumer; closing the consumer stops the producer at its next item.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


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
        while worker.is_alive():  # drain so a blocked producer can notice the stop
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)
