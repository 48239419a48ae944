"""One epoch of training and one evaluation pass, in the style of torchvision's reference.

Loss and accuracy are per-sample means over everything seen, partial last batch included
(sum of per-sample losses / count, correct / count as floats), and across ranks the sums
are all-reduced before dividing, so 2 processes report what 1 would.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dogclf.training import distributed


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    samples: int  # over all ranks
    seconds: float = 0.0
    data_seconds: float = 0.0  # time this rank waited for the loader
    local_samples: int = 0  # seen by this rank
    stopped: bool = False  # train_one_epoch left early: should_stop said so
    # evaluate(num_classes=N): N x N counts over all ranks, rows true, columns predicted
    confusion: list[list[int]] | None = None

    @property
    def images_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def data_share(self) -> float:
        """Fraction of the step time spent waiting for data (0 = the loader keeps up)."""
        return self.data_seconds / self.seconds if self.seconds > 0 else 0.0


class Meter:
    """Running sums on the device (no host sync per step), reduced once at the end."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0

    def update(
        self, per_sample_loss_sum: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor
    ) -> None:
        self.loss_sum += per_sample_loss_sum.detach().double()
        self.correct += (logits.argmax(dim=1) == targets).sum().double()
        self.count += targets.numel()

    def result(self) -> tuple[float, float, int]:
        """(mean loss, accuracy, samples) over all ranks."""
        totals = torch.stack(
            [
                self.loss_sum,
                self.correct,
                torch.tensor(float(self.count), dtype=torch.float64, device=self.loss_sum.device),
            ]
        )
        totals = distributed.all_reduce_sum(totals)
        loss_sum, correct, count = (float(v) for v in totals.tolist())
        if count == 0:
            return float("nan"), float("nan"), 0
        return loss_sum / count, correct / count, int(count)


class ConfusionCounts:
    """A confusion matrix summed like Meter: on the device, one all-reduce at the end."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        cell = targets * self.num_classes + logits.argmax(dim=1)  # row: true, column: predicted
        self.counts += torch.bincount(cell, minlength=self.counts.numel())

    def result(self) -> list[list[int]]:
        """Over all ranks; rows: the true class, columns: the prediction."""
        totals = distributed.all_reduce_sum(self.counts)
        matrix: list[list[int]] = totals.view(self.num_classes, -1).tolist()
        return matrix


@dataclass
class StepConfig:
    """How tensors reach the model: device, memory format, mixed precision."""

    device: torch.device
    channels_last: bool = False
    amp_dtype: torch.dtype | None = None  # torch.bfloat16 / torch.float16 on GPU, else None

    def to_device(
        self, images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fmt = (
            torch.channels_last
            if self.channels_last and images.dim() == 4
            else torch.contiguous_format
        )
        images = images.to(self.device, non_blocking=True, memory_format=fmt)
        return images, targets.to(self.device, non_blocking=True)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


@dataclass(frozen=True)
class PrecisionChoice:
    """Mixed precision for one run, as choose_precision decides it."""

    amp_dtype: torch.dtype | None = None  # autocast over the whole step (GPU)
    grad_scaler: bool = False  # fp16 gradients need loss scaling (torch.amp.GradScaler)
    backbone_dtype: torch.dtype | None = None  # the frozen backbone alone (CPU bf16)
    reason: str = ""  # why, for the run line

    @property
    def label(self) -> str:
        if self.amp_dtype is not None:
            name = str(self.amp_dtype).removeprefix("torch.")
            return f"{name}-autocast" + ("+GradScaler" if self.grad_scaler else "")
        if self.backbone_dtype is not None:
            return f"{str(self.backbone_dtype).removeprefix('torch.')}-backbone"
        return "fp32"


NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere and later multiply bf16 in tensor cores


def choose_precision(
    device_type: str,
    capability: tuple[int, int] | None,
    *,
    amp: bool,
    freeze_backbone: bool,
    cpu_native_bf16: bool,
) -> PrecisionChoice:
    """bf16 autocast on a GPU that has it natively (compute capability >= 8.0), fp16 with a
    GradScaler on older ones, on a CPU bf16 for a frozen backbone only where the CPU has it.

    Not torch.cuda.is_bf16_supported(): a T4 (sm_75, ml.g4dn) answers True through
    emulation, and emulated bf16 convolutions leave cuDNN's fast kernels.
    """
    if not amp:
        return PrecisionChoice(reason="--amp false")
    if device_type == "cuda":
        sm = f"sm_{capability[0]}{capability[1]}" if capability else "sm_?"
        if capability is not None and capability >= NATIVE_BF16_CAPABILITY:
            return PrecisionChoice(amp_dtype=torch.bfloat16, reason=f"cuda {sm}: native bf16")
        return PrecisionChoice(
            amp_dtype=torch.float16, grad_scaler=True, reason=f"cuda {sm}: bf16 is not native"
        )
    if device_type != "cpu":
        return PrecisionChoice(reason=f"{device_type}: no mixed precision here")
    if not freeze_backbone:
        return PrecisionChoice(reason="cpu: mixed precision only for a frozen backbone")
    if not cpu_native_bf16:
        return PrecisionChoice(reason="cpu: bf16 is not native")
    return PrecisionChoice(backbone_dtype=torch.bfloat16, reason="cpu: native bf16")


BadHandler = Callable[[list[Any]], None]
StopCheck = Callable[[int], bool]  # (batch index) -> stop now; the same answer on every rank


def _unpack(batch: Any, on_bad: BadHandler | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, targets[, unreadable files]) from our loaders, (images, targets) from any."""
    images, targets, *rest = batch
    if rest and rest[0] and on_bad is not None:
        on_bad(rest[0])
    return images, targets


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    step: StepConfig,
    *,
    scaler: torch.amp.GradScaler | None = None,
    on_bad: BadHandler | None = None,
    log: Callable[[str], None] | None = None,
    log_every: int = 0,
    prefix: str = "",
    should_stop: StopCheck | None = None,
) -> EpochStats:
    """One pass over `loader`; `should_stop` is asked before every batch (a SIGTERM's flag)."""
    model.train()
    meter = Meter(step.device)
    started = time.perf_counter()
    data_seconds = 0.0
    waited_from = time.perf_counter()
    stopped = False
    for i, batch in enumerate(loader):
        if should_stop is not None and should_stop(i):
            stopped = True
            break
        images, targets = _unpack(batch, on_bad)
        data_seconds += time.perf_counter() - waited_from
        if targets.numel() == 0:  # every file of the batch was unreadable
            waited_from = time.perf_counter()
            continue
        images, targets = step.to_device(images, targets)
        with step.autocast():
            logits = model(images)
            loss = criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        # criterion is a batch mean: times n gives this batch's share of the epoch's sum.
        meter.update(loss.detach() * targets.numel(), logits.detach(), targets)
        if log is not None and log_every and (i + 1) % log_every == 0:
            log(f"{prefix}[{i + 1}] loss {loss.item():.4f}")
        waited_from = time.perf_counter()
    if step.device.type == "cuda":
        torch.cuda.synchronize(step.device)
    seconds = time.perf_counter() - started
    loss_mean, accuracy, samples = meter.result()
    return EpochStats(loss_mean, accuracy, samples, seconds, data_seconds, meter.count, stopped)


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    step: StepConfig,
    *,
    on_bad: BadHandler | None = None,
    num_classes: int | None = None,
) -> EpochStats:
    """Mean cross-entropy (no label smoothing, so runs compare) and accuracy, eval mode;
    with `num_classes`, the confusion matrix too (ConfusionCounts)."""
    model.eval()
    meter = Meter(step.device)
    counts = ConfusionCounts(num_classes, step.device) if num_classes else None
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            images, targets = _unpack(batch, on_bad)
            if targets.numel() == 0:
                continue
            images, targets = step.to_device(images, targets)
            with step.autocast():
                logits = model(images)
            loss_sum = nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
            meter.update(loss_sum, logits, targets)
            if counts is not None:
                counts.update(logits, targets)
    seconds = time.perf_counter() - started
    loss_mean, accuracy, samples = meter.result()
    confusion = counts.result() if counts is not None else None
    return EpochStats(
        loss_mean, accuracy, samples, seconds, local_samples=meter.count, confusion=confusion
    )
