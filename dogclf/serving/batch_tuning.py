"""The batch size a server's workers run: about the fastest forward pass per image, measured
on this machine when the model loads, up to serving.max_batch_size.

Bigger is not always faster. On a CPU, with passes side by side on one core each, a pass
over 16 images ran 7-15% slower per image than one over 4 or 8 (resnet50, int8 and fp32,
2-core EPYC: the activations of 16 images outgrow the core's cache), and under overload
the batcher always has 16 waiting: the surplus would cost the accepted requests
throughput. On a GPU the largest batch is usually the fastest, and the measurement says so.

Among sizes about as fast per pass (within 5%), the smallest of at least SMALL_BATCH wins.
Below it, serving pays per batch what this timing does not see (the worker's wake-up, its
GIL reacquisition after the pass, a future per request): forced to 2, 4 and 8 on the 2-core
EPYC, where the three passes ran within 3% per image of each other, int8 resnet50 served
0.71x, 0.81x and 0.82x its forward pass (medians of 5 interleaved rounds; 2 lost to 4 in
every round), and "the smaller within 3%" had picked 2 in three of four loads that day.
Above it, under overload, batches of 8 kept 0.78-0.89x of the sustained rate at 4x offered,
batches of 4 0.88-0.95x (int8, same day): the smaller answers sooner.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Sizes within this share of the fastest per image are as fast: the host's noise between
# rounds is 2-4% here.
TOLERANCE = 0.05
# Below this many images, a size must be more than TOLERANCE faster to win: the per-batch
# costs of serving (module docstring).
SMALL_BATCH = 4
# Rounds over the sizes; each size's best pass is kept. Interleaved, so a slow spell of
# the host (another process, a noisy neighbour) slows one pass of every size, not all of one.
ROUNDS = 3


@dataclass(frozen=True)
class BatchTuning:
    batch_size: int  # what the workers take at most
    ms_per_image: dict[int, float]  # size -> the best measured time per image

    def as_dict(self) -> dict[str, object]:
        return {
            "batch_size": self.batch_size,
            "ms_per_image": {str(n): round(ms, 3) for n, ms in sorted(self.ms_per_image.items())},
        }


def candidate_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, ... up to max_batch_size, and max_batch_size itself."""
    sizes, n = [], 1
    while n < max_batch_size:
        sizes.append(n)
        n *= 2
    return [*sizes, max_batch_size]


def tune_batch_size(
    run_pass: Callable[[int], object], max_batch_size: int, workers: int
) -> BatchTuning:
    """Time `run_pass(n)` (one forward pass of n images) at each candidate size, on `workers`
    threads at once as the server runs them (they share the caches and memory bandwidth),
    after one untimed pass of each size that builds its kernels."""
    sizes = candidate_sizes(max_batch_size)
    best = _time_side_by_side(run_pass, sizes, workers)
    timings = {size: 1000 * best[size] / size for size in sizes}
    fastest = min(timings.values())
    near = [n for n, ms in timings.items() if ms <= fastest * (1 + TOLERANCE)]
    chosen = min([n for n in near if n >= SMALL_BATCH] or near)
    return BatchTuning(chosen, timings)


def _time_side_by_side(
    run_pass: Callable[[int], object], sizes: list[int], workers: int
) -> dict[int, float]:
    """The best pass time (seconds) of each size, over ROUNDS rounds on every worker; the
    workers start each size together, so their passes overlap as they do when serving."""
    best = {size: float("inf") for size in sizes}
    failures: list[BaseException] = []
    lock = threading.Lock()
    together = threading.Barrier(workers)

    def work() -> None:
        try:
            for size in sizes:
                run_pass(size)  # warm: this shape's kernels, this thread's pools
            for _ in range(ROUNDS):
                for size in sizes:
                    together.wait()
                    started = time.perf_counter()
                    run_pass(size)
                    elapsed = time.perf_counter() - started
                    with lock:
                        best[size] = min(best[size], elapsed)
        except threading.BrokenBarrierError:
            return  # another worker failed: its error is the one reported
        except BaseException as exc:  # re-raised below, on the caller's thread
            together.abort()
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=work, name=f"dogclf-tune-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return best
