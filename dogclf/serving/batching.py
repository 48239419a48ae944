"""Dynamic batching: items submitted by many threads, run together by one worker thread.

Request threads decode and transform their images, then `submit` the tensors; a worker
takes whatever is queued (up to `max_batch_size`, waiting at most `max_wait_s` for more
after the first) and runs one forward pass. While it runs, the request threads decode the
next images, so decoding overlaps inference. With several workers (CPU serving), one
collects the next batch while the others run theirs.
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
    busy_s: float = 0.0  # time spent inside run_batch, summed over the workers
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
        workers: int = 1,
        name: str = "dogclf-batcher",
    ) -> None:
        if max_batch_size < 1 or workers < 1:
            raise ValueError("max_batch_size and workers must be >= 1")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_s)
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        self._lock = threading.Lock()
        self._running = 0
        self._closed = False

    @property
    def workers(self) -> int:
        return len(self._threads)

    def start(self) -> DynamicBatcher[T, R]:
        self._running = len(self._threads)
        for thread in self._threads:
            thread.start()
        return self

    def submit(self, item: T) -> Future[R]:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        future: Future[R] = Future()
        self._queue.put((item, future))
        return future

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the workers (one stop marker each)."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

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
            self._run(batch)
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:  # the other workers are gone: fail what was submitted after close
            self._fail_leftovers()

    def _run(self, batch: list[Any]) -> None:
        live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
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

    def _fail_leftovers(self) -> None:
        """Rather than leave a request thread waiting forever."""
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not _STOP and entry[1].set_running_or_notify_cancel():
                entry[1].set_exception(RuntimeError("the server is shutting down"))

    def _record(self, size: int, seconds: float) -> None:
        with self._lock:
            s = self.stats
            s.batches += 1
            s.items += size
            s.largest = max(s.largest, size)
            s.busy_s += seconds
            s.sizes[size] = s.sizes.get(size, 0) + 1
