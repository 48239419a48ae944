"""Dynamic batching with admission control: items submitted by many threads, run together by
a few worker threads, refused early when they could not start before their deadline.

Request threads decode and transform their images, then `submit` the tensors; a worker
takes whatever is queued (up to `max_batch_size`, waiting at most `max_wait_s` for more
after the first) and runs one forward pass. While it runs, the request threads decode the
next images, so decoding overlaps inference. With several workers (CPU serving), a worker
takes only its share of what is waiting (1/workers of it) and never waits for more: a
worker that swept up a whole burst would run one long pass while the others sat idle
after theirs (on 2 cores: batches of 11-13 beside batches of 1-2, workers idle 3-5% of
the time; with the share, batches of about 4 and idle under 1%).

Admission: the queue holds at most `max_queue` items, and an item whose expected wait
(queued items x measured time per item / workers, plus one pass) is over half the time to
its deadline is refused at `admit` or `submit` with `Overloaded`; one still queued when its
deadline can no longer be met is refused when a worker takes it. Under more load than the
model can take, the surplus gets a fast retryable refusal while the accepted requests keep
a bounded latency.
"""

from __future__ import annotations

import math
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
# How fast the per-item time follows new measurements (an exponential moving average).
EMA_WEIGHT = 0.2
CLOSED = "the batcher is closed: the server is shutting down"
# Admit an item only if its expected wait is within this share of the time it has left:
# the rate the estimate comes from drifts (other work on the machine, batch sizes), and a
# queue admitted to the last second would miss its deadlines at the first slowdown, after
# its images were decoded. Half the deadline of queued work still keeps every worker busy.
HEADROOM = 0.5


class Refused(RuntimeError):
    """The batcher will not run this item: answered 503 with `Retry-After`."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def retry_after(self) -> int:
        """Whole seconds for the Retry-After header, at least 1."""
        return max(1, math.ceil(self.retry_after_s))


class Overloaded(Refused):
    """The queue is full, or the item could not start before its deadline."""


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    busy_s: float = 0.0  # time spent inside run_batch, summed over the workers
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> count
    refused_queue_full: int = 0
    refused_deadline: int = 0  # refused at admission: the wait would overrun the deadline
    expired_in_queue: int = 0  # admitted, but the deadline could no longer be met

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "items": self.items,
            "largest_batch": self.largest,
            "mean_batch": round(self.items / self.batches, 2) if self.batches else 0.0,
            "busy_s": round(self.busy_s, 3),
            "batch_sizes": dict(sorted(self.sizes.items())),
            "refused_queue_full": self.refused_queue_full,
            "refused_deadline": self.refused_deadline,
            "expired_in_queue": self.expired_in_queue,
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
        max_queue: int | None = None,
        item_s: float = 0.0,
        name: str = "dogclf-batcher",
    ) -> None:
        """`max_queue`: items waiting for a worker (None = unbounded); `item_s`: a first
        guess of one item's share of a forward pass (the warm-up's), refined by each batch."""
        if max_batch_size < 1 or workers < 1 or (max_queue is not None and max_queue < 1):
            raise ValueError("max_batch_size, workers and max_queue must be >= 1")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_s)
        self.max_queue = max_queue
        self.item_s = max(0.0, item_s)
        self.batch_s = self.item_s  # one pass as the batches come (measured, like item_s)
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        self._lock = threading.Lock()
        self._queued = 0  # submitted, not yet taken by a worker
        self._running = 0
        self._closed = False

    @property
    def workers(self) -> int:
        return len(self._threads)

    @property
    def queued(self) -> int:
        return self._queued

    def start(self) -> DynamicBatcher[T, R]:
        self._running = len(self._threads)
        for thread in self._threads:
            thread.start()
        return self

    def expected_wait_s(self, extra: int = 0) -> float:
        """How long the last of `extra` items submitted now would take to be answered: the
        queue ahead of it drained by every worker, then one pass of the size batches run."""
        return (self._queued + extra) * self.item_s / self.workers + self.batch_s

    def admit(self, count: int, deadline: float | None) -> None:
        """Refuse now (Overloaded) what `submit` would refuse, before decoding it."""
        if self._closed:
            raise Refused(CLOSED)
        with self._lock:
            self._check(count, deadline)

    def submit(self, item: T, deadline: float | None = None) -> Future[R]:
        """Queue one item to start before `deadline` (time.monotonic()), or raise Refused."""
        if self._closed:
            raise Refused(CLOSED)
        future: Future[R] = Future()
        with self._lock:
            self._check(1, deadline)
            self._queued += 1
        self._queue.put((item, future, deadline))
        return future

    def _check(self, count: int, deadline: float | None) -> None:
        """Under self._lock: the queue bound, then the deadline against the expected wait."""
        retry = max(1.0, self.expected_wait_s())
        if self.max_queue is not None and self._queued + count > self.max_queue:
            self.stats.refused_queue_full += 1
            raise Overloaded(f"the server is at capacity ({self._queued} images queued)", retry)
        now = time.monotonic()
        if deadline is not None and self.expected_wait_s(count) > HEADROOM * (deadline - now):
            self.stats.refused_deadline += 1
            raise Overloaded("the server is at capacity; retry later", retry)

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the workers (one stop marker each)."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def _take(self, entry: Any) -> None:
        if entry is not _STOP:
            with self._lock:
                self._queued -= 1

    def _share(self, taken: int) -> int:
        """How many items this worker may take: with several workers, its share of what is
        waiting (taken + queued, split evenly), never more than max_batch_size. Taking all
        of a burst would leave the other workers idle while one runs a long batch."""
        if self.workers == 1:
            return self.max_batch_size
        return min(self.max_batch_size, max(1, math.ceil((taken + self._queued) / self.workers)))

    def _collect(self, first: Any) -> tuple[list[Any], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self._share(len(batch)):
            remaining = deadline - time.monotonic()
            try:
                entry = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            self._take(entry)
            if entry is _STOP:
                return batch, True
            batch.append(entry)
        return batch, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            self._take(first)
            if first is _STOP:
                break
            batch, stopping = self._collect(first)
            self._run(self._drop_expired(batch))
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:  # the other workers are gone: fail what was submitted after close
            self._fail_leftovers()

    def _drop_expired(self, batch: list[Any]) -> list[Any]:
        """Refuse the items that would finish after their deadline if run now."""
        finish = time.monotonic() + max(self.batch_s, self.item_s * len(batch))
        live = []
        for entry in batch:
            item_deadline = entry[2]
            if item_deadline is not None and finish > item_deadline:
                if entry[1].set_running_or_notify_cancel():
                    entry[1].set_exception(Overloaded("the request waited past its deadline"))
                with self._lock:
                    self.stats.expired_in_queue += 1
            else:
                live.append(entry)
        return live

    def _run(self, batch: list[Any]) -> None:
        live = [(item, f) for item, f, _ in batch if f.set_running_or_notify_cancel()]
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
                entry[1].set_exception(Refused(CLOSED))

    def _record(self, size: int, seconds: float) -> None:
        with self._lock:
            s = self.stats
            s.batches += 1
            s.items += size
            s.largest = max(s.largest, size)
            s.busy_s += seconds
            s.sizes[size] = s.sizes.get(size, 0) + 1
            self.item_s = _ema(self.item_s, seconds / size)
            self.batch_s = _ema(self.batch_s, seconds)


def _ema(previous: float, sample: float) -> float:
    """An exponential moving average; the first sample replaces an unset (0) value."""
    return sample if not previous else (1 - EMA_WEIGHT) * previous + EMA_WEIGHT * sample
