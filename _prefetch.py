"""Run an iterator one step ahead on a background thread, so reading overlaps with writing.

Reading, validating and hashing a batch (numpy and hashlib release the GIL) proceed while the
main thread encodes and writes the previous one (Parquet encoding releases it too). At most
``depth`` items wait in the queue, so memory stays bounded; an exception in the producer is
re-raised in the consumer at the same point of the stream.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``items``, produced ahead on another thread."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            slots.put(_Failure(exc))

    worker = threading.Thread(target=produce, name="vecx-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
