"""Run an iterator in a background thread, a few items ahead (Parquet decoding releases the GIL,
so decoding the next chunk overlaps with converting the current one)."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` in order while a thread produces up to ``depth`` items ahead.

    An exception raised by the producer is re-raised here, in the consumer. Closing the
    returned generator early stops the producer.

    Args:
        items: any iterable (it is iterated in the background thread).
        depth: how many items may wait, decoded, ahead of the consumer.
    """
    slots: "queue.Queue[object]" = queue.Queue(maxsize=depth)
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
        except BaseException as err:  # handed to the consumer, which re-raises it
            slots.put(_Failure(err))

    worker = threading.Thread(target=produce, name="deepsets-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
