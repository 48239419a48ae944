"""Dynamic batching: items submitted by many threads, run together by one worker thread.

Request threads decode and transform their images, then `submit` the tensors; the worker
takes whatever is queued (up to `max_batch_size`, waiting at most `max_wait_s` for more
after the first) and runs one forward pass. While it runs, the request threads decode the
next images, so decoding overlaps inference.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    busy_s: float = 0.0  # time spent inside run_batch
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> count

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "items": self.items,
            "largest_batch": self.largest,
            "mean_batch": round(self.items / self.batches, 2) if self.batches else 0.0,
            "busy_s": round(self.busy_s, 3),
            "batch_sizes": dict(sorted(self.sizes.items())),
        }


class DynamicBatcher(Generic[T, R]):
    """`submit(item)` -> Future of `run_batch([... item ...])[i]`, grouped across threads."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        name: str = "dogclf-batcher",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_s)
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._closed = False

    def start(self) -> DynamicBatcher[T, R]:
        self._thread.start()
        return self

    def submit(self, item: T) -> Future[R]:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        future: Future[R] = Future()
        self._queue.put((item, future))
        return future

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the worker."""
        self._closed = True
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _collect(self, first: Any) -> tuple[list[Any], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                entry = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if entry is _STOP:
                return batch, True
            batch.append(entry)
        return batch, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stopping = self._collect(first)
            live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
            if not live:
                continue
            items, futures = [item for item, _ in live], [f for _, f in live]
            started = time.perf_counter()
            try:
                results = self.run_batch(items)
                if len(results) != len(items):
                    raise RuntimeError(f"run_batch returned {len(results)} for {len(items)} items")
            except BaseException as exc:  # hand the failure to every waiting request
                for future in futures:
                    future.set_exception(exc)
            else:
                for future, result in zip(futures, results, strict=True):
                    future.set_result(result)
            self._record(len(items), time.perf_counter() - started)
        # Anything submitted after close: fail it rather than leave a thread waiting forever.
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not _STOP and entry[1].set_running_or_notify_cancel():
                entry[1].set_exception(RuntimeError("the server is shutting down"))

    def _record(self, size: int, seconds: float) -> None:
        s = self.stats
        s.batches += 1
        s.items += size
        s.largest = max(s.largest, size)
        s.busy_s += seconds
        s.sizes[size] = s.sizes.get(size, 0) + 1
