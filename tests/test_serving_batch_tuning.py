"""The batch size `dogclf serve` measures at load: the fastest per image; on a tie, the
smallest of at least 4 images.

The forward pass here is a sleep of a chosen length per batch size (a stand-in: the real
classifier's times are whatever the host gives, which cannot be set up to test a choice);
the server's own measurement is checked in test_serving_server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from dogclf.serving.batch_tuning import ROUNDS, candidate_sizes, tune_batch_size


def sleeping_pass(ms_per_image: dict[int, float], calls: list[int]) -> Callable[[int], None]:
    lock = threading.Lock()

    def run_pass(size: int) -> None:
        with lock:
            calls.append(size)
        time.sleep(ms_per_image[size] * size / 1000)

    return run_pass


def test_candidate_sizes_are_powers_of_two_up_to_the_maximum() -> None:
    assert candidate_sizes(16) == [1, 2, 4, 8, 16]
    assert candidate_sizes(12) == [1, 2, 4, 8, 12]
    assert candidate_sizes(1) == [1]


def test_the_fastest_size_per_image_is_chosen_on_every_worker_at_once() -> None:
    # As measured on a 2-core CPU: batch 16 slower per image than 4 or 8.
    ms = {1: 6.0, 2: 4.0, 4: 2.0, 8: 2.6, 16: 3.4}
    calls: list[int] = []
    tuning = tune_batch_size(sleeping_pass(ms, calls), 16, workers=2)
    assert tuning.batch_size == 4
    assert tuning.ms_per_image[4] == pytest.approx(2.0, rel=0.5)
    assert tuning.ms_per_image[16] > tuning.ms_per_image[4]
    # Each worker: one warm-up pass of each size, then ROUNDS timed ones.
    assert sorted(calls) == sorted([1, 2, 4, 8, 16] * 2 * (1 + ROUNDS))


def test_on_a_tie_the_smallest_of_at_least_4_wins_and_a_clearly_faster_size_does() -> None:
    # 2 is the fastest by 2%: noise beside serving's per-batch costs, take 4, not 8.
    tie = {1: 8.0, 2: 3.0, 4: 3.0 * 1.02, 8: 3.0 * 1.03}
    assert tune_batch_size(sleeping_pass(tie, []), 8, workers=1).batch_size == 4
    apart = {1: 8.0, 2: 3.0, 4: 3.0 * 1.15}  # 4 is 15% slower per image: keep 2
    assert tune_batch_size(sleeping_pass(apart, []), 4, workers=1).batch_size == 2
    gpu_like = {1: 8.0, 2: 4.0, 4: 2.0, 8: 1.0}
    assert tune_batch_size(sleeping_pass(gpu_like, []), 8, workers=1).batch_size == 8


def test_a_pass_that_fails_is_raised_and_no_worker_is_left_waiting() -> None:
    def run_pass(size: int) -> None:
        if size == 8 and threading.current_thread().name.endswith("-1"):
            raise RuntimeError("out of memory at batch 8")

    with pytest.raises(RuntimeError, match="batch 8"):
        tune_batch_size(run_pass, 16, workers=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("dogclf-tune")]
