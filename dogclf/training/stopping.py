"""SIGTERM -> finish cleanly: the best model so far in the model dir, then exit.

SageMaker's StopTrainingJob, a tuning job's early stopping and Hyperband stop a training job
with SIGTERM and SIGKILL it 120 seconds later (StopTrainingJob in botocore's SageMaker
service model); torchrun's agent forwards a SIGTERM it gets to every worker and kills them
after its shutdown timeout (30 s by default). The handler only records the signal; the epoch
loop asks `StopRequest.agreed` between batches, so no heavy work runs inside a handler.

With several processes the answer must be the same on every rank at the same batch, or
one rank would leave the loop while the others wait in DDP's all-reduce: `agreed` sums the
ranks' flags (one rank signalled stops them all), every POLL_STEPS batches so the GPU is
not synchronised at every step.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

import torch

from dogclf.training import distributed

POLL_STEPS = 10  # batches between two cross-rank checks (each is a small all-reduce)


class StopRequest:
    """What a stop signal left behind: its name, or None."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name  # only a note: no I/O, no locks here

    def agreed(self, device: torch.device, *, world_size: int) -> bool:
        """Whether any rank was signalled; a collective when world_size > 1 (call it at the
        same point on every rank)."""
        if world_size <= 1:
            return self.signal_name is not None
        flag = torch.tensor(1.0 if self.signal_name else 0.0, device=device)
        if distributed.all_reduce_sum(flag).item() > 0:
            self.signal_name = self.signal_name or "SIGTERM"  # another rank's signal
            return True
        return False

    def at_batch(self, index: int, device: torch.device, *, world_size: int) -> bool:
        """The check before batch `index`: every batch alone, every POLL_STEPS with ranks."""
        if world_size > 1 and index % POLL_STEPS:
            return False
        return self.agreed(device, world_size=world_size)


@contextlib.contextmanager
def stop_on(
    request: StopRequest, signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)
) -> Iterator[StopRequest]:
    """Route `signals` to `request` while the block runs, then restore the old handlers."""
    previous = {sig: signal.signal(sig, request.handle) for sig in signals}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
