"""The dynamic batcher and the CPU worker plan of `dogclf serve`, in-process."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
import torch

from dogclf.serving.batching import DynamicBatcher
from dogclf.serving.server import worker_plan


def test_many_threads_each_get_their_own_result_from_several_workers() -> None:
    seen: list[int] = []
    gate = threading.Lock()

    def run_batch(items: list[int]) -> list[int]:
        with gate:
            seen.append(len(items))
        return [x * 10 for x in items]

    batcher = DynamicBatcher(run_batch, max_batch_size=4, max_wait_s=0.001, workers=2).start()
    results: dict[int, int] = {}

    def client(first: int) -> None:
        for x in range(first, first + 25):
            results[x] = batcher.submit(x).result()

    threads = [threading.Thread(target=client, args=(i * 100,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert results == {x: x * 10 for x in results} and len(results) == 200
    assert sum(seen) == 200 and max(seen) <= 4
    stats = batcher.stats.as_dict()
    assert stats["items"] == 200 and stats["batches"] == len(seen)
    assert batcher.workers == 2


def test_a_failing_batch_fails_its_requests_and_the_workers_go_on() -> None:
    def run_batch(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("boom")
        return items

    batcher = DynamicBatcher(run_batch, max_batch_size=1, max_wait_s=0, workers=2).start()
    with pytest.raises(ValueError, match="boom"):
        batcher.submit(-1).result()
    assert batcher.submit(7).result() == 7
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(8)


def test_close_runs_what_is_queued_then_stops_every_worker() -> None:
    release = threading.Event()
    started = threading.Event()

    def run_batch(items: list[int]) -> list[int]:
        started.set()
        release.wait()
        return items

    batcher = DynamicBatcher(run_batch, max_batch_size=2, max_wait_s=0, workers=2).start()
    first = batcher.submit(1)
    started.wait()
    queued: list[Future[int]] = [batcher.submit(x) for x in (2, 3, 4)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    release.set()
    closer.join()
    assert first.result() == 1 and [f.result() for f in queued] == [2, 3, 4]
    assert not any(t.is_alive() for t in batcher._threads)


def test_a_free_worker_takes_its_share_of_a_burst_not_all_of_it() -> None:
    """Two workers: one is held in a long pass while 8 items queue up. The worker that comes
    free takes half of them (4), not all 8: the other would sit idle when its pass ends
    while this one runs a batch twice as long (what `dogclf serve` saw on 2 cores: batches
    of 11-13 beside batches of 1-2, the workers idle 3-5% of the time)."""
    held = {0: threading.Event(), 1: threading.Event()}
    running = {0: threading.Event(), 1: threading.Event()}
    sizes: list[list[int]] = []

    def run_batch(items: list[int]) -> list[int]:
        sizes.append(list(items))
        for x in items:
            if x in held:
                running[x].set()
                held[x].wait()
        return items

    batcher = DynamicBatcher(run_batch, max_batch_size=16, max_wait_s=0.05, workers=2).start()
    # With two workers, a lone item runs at once rather than waiting for company: the other
    # worker is there for the next one.
    first = batcher.submit(0)
    running[0].wait()
    second = batcher.submit(1)
    running[1].wait()
    burst = [batcher.submit(x) for x in range(2, 10)]
    held[0].set()  # one worker comes free; the other stays in its pass
    assert [f.result() for f in burst[:4]] == [2, 3, 4, 5]
    assert sizes[:3] == [[0], [1], [2, 3, 4, 5]]
    held[1].set()
    assert [f.result() for f in burst] == list(range(2, 10))
    assert first.result() == 0 and second.result() == 1
    assert max(len(batch) for batch in sizes) == 4 and sum(map(len, sizes)) == 10
    batcher.close()


@pytest.mark.parametrize(
    ("device", "cpus", "workers", "threads", "plan"),
    [
        ("cpu", 2, None, None, (2, 1)),  # this machine: two single-threaded passes
        ("cpu", 16, None, None, (4, 4)),
        ("cpu", 1, None, None, (1, 1)),
        ("cpu", 8, 1, None, (1, 8)),  # one pass over every core
        ("cpu", 8, None, 2, (4, 2)),
        ("cpu", 8, 3, 3, (3, 3)),  # as asked
        ("cuda", 8, None, None, (1, torch.get_num_threads())),  # one worker feeds a GPU
    ],
)
def test_worker_plan(
    device: str, cpus: int, workers: int | None, threads: int | None, plan: tuple[int, int]
) -> None:
    assert worker_plan(torch.device(device), cpus, workers, threads) == plan
