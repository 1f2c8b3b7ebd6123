"""Run an iterator one step ahead on a background thread, so reading overlaps with writing.

Reading, validating and hashing a batch (numpy and hashlib release the GIL) proceed while the
main thread encodes and writes the previous one (Parquet encoding releases it too). At most
``depth`` items wait in the queue, so memory stays bounded; an exception in the producer is
re-raised in the consumer at the same point of the stream.

The producer starts when :func:`prefetch` is called, not at the first ``next()``: a caller
can start reading and then do slow set-up of its own (``vecx index`` imports usearch, which takes
a while) while the first item is made. A caller that may never consume the iterator closes it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _produce(items: Iterator[Any], slots: queue.Queue[Any], stop: threading.Event) -> None:
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


class Prefetch(Iterator[T]):
    """The items of an iterator, produced ahead on a daemon thread; :meth:`close` stops it."""

    def __init__(self, items: Iterator[T], depth: int) -> None:
        self._slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        # The thread holds the queue and the event, not this object, so that dropping the
        # iterator (a consumer that left its loop on an error) reaches __del__ and stops it.
        threading.Thread(target=_produce, args=(items, self._slots, self._stop), name="vecx-prefetch",
                         daemon=True).start()

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._slots.get()
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.exc
        return item

    def close(self) -> None:
        """Stop producing (the thread ends after the item it is making); further ``next()`` ends."""
        self._finished = True
        self._stop.set()

    __del__ = close


def prefetch(items: Iterator[T], depth: int = 2) -> Prefetch[T]:
    """The items of ``items``, produced ahead on another thread that starts now."""
    return Prefetch(items, depth)
