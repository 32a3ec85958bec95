"""Host stages around the model: reading runs ahead of it and writing runs behind it, each in a
background thread with a bounded queue, so the accelerator does not wait for FASTA parsing or
Parquet writing (torch, zstd and Parquet encoding release the GIL while they work).

An error in a stage is raised in the main thread at its next hand-over, with its own type and
traceback, so no row is lost silently; stopping joins the threads before returning.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


class ReadAhead(Generic[T]):
    """Iterate `items` in a background thread, about `depth` items ahead of the consumer.

    Items cross in chunks of up to `chunk` (one queue hand-over per chunk instead of per item).
    Items read but not yet queued wait in `_pending`; a consumer that finds the queue empty takes
    them at once, so a source that pauses never holds back what it has already given."""

    def __init__(self, items: Iterable[T], depth: int = 4096, chunk: int = 64) -> None:
        self._chunk = max(1, min(chunk, depth))
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth // self._chunk))
        # Moved to the queue, or taken by the consumer from an empty queue, only under the lock:
        # so pending items are always newer than every queued one, and order is kept.
        self._pending: list[T] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(iter(items),), name="p2t-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self, items: Iterator[T]) -> None:
        ending: object = _END
        try:
            for item in items:
                with self._lock:
                    self._pending.append(item)
                    if len(self._pending) >= self._chunk and not self._flush():
                        return
        except BaseException as exc:  # handed to the consumer after the items read before it
            ending = exc
        with self._lock:
            if not self._flush():
                return
        self._put(ending)

    def _flush(self) -> bool:
        """Queue the pending items (the lock held); False when the consumer stopped first."""
        chunk, self._pending = self._pending, []
        return not chunk or self._put(chunk)

    def _take(self) -> object:
        """The next queued chunk (or end, or error); from an empty queue, the pending items."""
        while True:
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty() and self._pending:
                        chunk, self._pending = self._pending, []
                        return chunk

    def _put(self, item: object) -> bool:
        """Queue `item`, waiting for room unless the consumer stops first (then False)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._take()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield from item
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (the consumer is done or gave up) and wait for the reader to end."""
        self._stop.set()
        self._thread.join()


class WriteBehind(Generic[T]):
    """Hand items to `write` in a background thread, at most `depth` waiting; `close` waits for
    every item to be written. An error in `write` is raised by the next `put` or by `close`."""

    def __init__(self, write: Callable[[T], None], depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None  # raised once, in the caller
        self._failed = False  # after a failed write nothing more is written: parts stay consecutive
        self._thread = threading.Thread(target=self._drain, name="p2t-write-behind", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (item := self._queue.get()) is not _END:
            if not self._failed:
                try:
                    self._write(item)
                except BaseException as exc:  # raised in the main thread by put() or close()
                    self._error, self._failed = exc, True

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, item: T) -> None:
        """Queue one item (blocks while `depth` items wait); raises an earlier write's error."""
        self._raise()
        self._queue.put(item)

    def close(self) -> None:
        """Wait until everything queued is written; raise the first write error, if any."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        self._raise()


class InLine(Generic[T]):
    """`WriteBehind`'s interface, writing at once in the caller's thread (the stages turned off)."""

    def __init__(self, write: Callable[[T], None]) -> None:
        self.put, self.close = write, lambda: None
