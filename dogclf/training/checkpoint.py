"""Save and resume training state: one `checkpoint.pt` per run, replaced every epoch.

What a checkpoint holds is defined here and nowhere else: `save` writes it, `restore` reads
it back into a run's objects and returns the `Progress` to continue from.

On SageMaker the checkpoint dir is /opt/ml/checkpoints, which SageMaker syncs to S3 and
restores when a managed spot job restarts; locally it is any folder. Writes go to a
temporary file and are renamed into place, so a kill during a save leaves the previous
checkpoint intact rather than a truncated one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dogclf.errors import DogclfError

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 2  # 2: `hyperparameters`, checked on resume

# The options (argparse dests) that fix every step's arithmetic: a checkpoint written with
# other values is another run's (another tuning trial's), never resumed. Left out on
# purpose: `epochs` (raising it continues a run; the LR schedule is closed-form in
# train.make_scheduler), `patience` (when to stop, not what a step does), and how the
# host computes (device, amp, num_workers, compile): a restart may come on other hardware.
RESUME_MUST_MATCH = (
    "arch",
    "pretrained",
    "freeze_backbone",
    "feature_cache",
    "augment_views",
    "batch_size",
    "lr",
    "optimizer",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "lr_scheduler",
    "image_size",
    "seed",
)


@dataclass
class Resumable:
    """The live objects whose state a checkpoint carries."""

    model: nn.Module  # the network whose state_dict is saved (not its DDP or frozen wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None  # fp16 autocast only (GPUs without native bf16)


@dataclass
class Progress:
    """How far a run got: what the epoch loop updates and a resumed run continues from."""

    next_epoch: int = 0  # 0-based index of the next epoch to run
    best: dict[str, Any] | None = None  # the best epoch so far (0-based "epoch", losses, ...)
    best_weights: dict[str, Any] | None = None  # the model's state_dict at that epoch (CPU)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch run
    stale_epochs: int = 0  # epochs since the best one
    stopped_early: bool = False

    @property
    def best_epoch(self) -> int:
        """The best epoch, 1-based as the logs count; 0 before any."""
        return self.best["epoch"] + 1 if self.best is not None else 0


def atomic_save(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save(
    checkpoint_dir: Path,
    parts: Resumable,
    progress: Progress,
    *,
    arch: str,
    labels: list[str],
    args: Mapping[str, Any],
    only: str = "",
) -> Path:
    """Write the checkpoint after the epoch `progress.next_epoch - 1`.

    `only`: save just the weights whose names start with it (a frozen backbone's head; the
    backbone is rebuilt the same from arch, pretrained and seed, which a resume must match)."""
    epoch = progress.next_epoch - 1
    best_is_now = progress.best is not None and progress.best["epoch"] == epoch
    model = {k: v for k, v in parts.model.state_dict().items() if k.startswith(only)}
    state = {
        "arch": arch,
        "labels": labels,
        "epoch": epoch,  # 0-based, completed
        "model": model,
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "best": progress.best,
        # The best weights only when they are not this epoch's (saves space).
        "best_model": None if best_is_now else progress.best_weights,
        "history": progress.history,
        "stale_epochs": progress.stale_epochs,
        "stopped_early": progress.stopped_early,
        "hyperparameters": resume_hyperparameters(args),  # restore() compares them
        "args": {k: str(v) for k, v in args.items()},  # for a human reading the file
    }
    return save_checkpoint(checkpoint_dir, state)


def resume_hyperparameters(args: Mapping[str, Any]) -> dict[str, Any]:
    return {name: args.get(name) for name in RESUME_MUST_MATCH}


def restore(
    checkpoint_dir: Path,
    parts: Resumable,
    *,
    arch: str,
    labels: list[str],
    args: Mapping[str, Any],
) -> Progress | None:
    """Load the checkpoint in `checkpoint_dir` into `parts`; None when there is none.

    Call it before the model is wrapped (frozen fast path, DDP): they copy its weights.
    """
    state = load_checkpoint(checkpoint_dir)
    if state is None:
        return None
    check_compatible(state, arch=arch, labels=labels)
    check_same_hyperparameters(state, args, checkpoint_dir / CHECKPOINT_FILE)
    weights = parts.model.state_dict()
    weights.update(state["model"])  # all of them, or a frozen backbone's head (save's `only`)
    parts.model.load_state_dict(weights)
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    if parts.scaler is not None and state.get("scaler"):
        parts.scaler.load_state_dict(state["scaler"])
    best_model = state.get("best_model")
    return Progress(
        next_epoch=int(state["epoch"]) + 1,
        best=state["best"],
        best_weights=best_model if best_model is not None else state["model"],
        history=list(state["history"]),
        stale_epochs=int(state["stale_epochs"]),
        stopped_early=bool(state.get("stopped_early")),
    )


def save_checkpoint(checkpoint_dir: Path, state: dict[str, Any]) -> Path:
    """`state` as `save` assembles it, stamped with the format version."""
    return atomic_save(
        {"format_version": FORMAT_VERSION, **state}, checkpoint_dir / CHECKPOINT_FILE
    )


def load_checkpoint(checkpoint_dir: Path | None) -> dict[str, Any] | None:
    """The latest checkpoint in `checkpoint_dir`, or None when there is none."""
    if checkpoint_dir is None:
        return None
    path = checkpoint_dir / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DogclfError(
            f"cannot read the checkpoint {path}: {exc}",
            "delete it (or use another --checkpoint-dir) to start the run from scratch",
        ) from None
    if state.get("format_version") != FORMAT_VERSION:
        raise DogclfError(
            f"{path} has checkpoint format {state.get('format_version')}, expected {FORMAT_VERSION}",
            "delete it (or use another --checkpoint-dir) to start the run from scratch",
        )
    return state


def check_compatible(state: dict[str, Any], *, arch: str, labels: list[str]) -> None:
    """Refuse to resume a checkpoint from another model or dataset (a reused folder)."""
    if state.get("arch") != arch or state.get("labels") != labels:
        raise DogclfError(
            f"the checkpoint in this checkpoint dir is from another run "
            f"({state.get('arch')}, {len(state.get('labels') or [])} classes; "
            f"this run: {arch}, {len(labels)} classes)",
            "use a fresh --checkpoint-dir, or delete the old checkpoint.pt",
        )


def check_same_hyperparameters(state: dict[str, Any], args: Mapping[str, Any], path: Path) -> None:
    """Refuse a checkpoint another run wrote with other settings.

    A spot restart of a job runs with exactly its hyperparameters, so any difference means
    the file is another run's (another trial's): resuming it would silently continue that
    run under this one's name. Failing is the only answer that can never mix two runs;
    starting afresh would also overwrite the other run's checkpoint.
    """
    saved: dict[str, Any] = state.get("hyperparameters") or {}
    wanted = resume_hyperparameters(args)
    differ = [name for name in RESUME_MUST_MATCH if saved.get(name) != wanted[name]]
    if differ:
        shown = ", ".join(
            f"{name.replace('_', '-')} {saved.get(name)!r} there, {wanted[name]!r} here"
            for name in differ
        )
        raise DogclfError(
            f"the checkpoint {path} was written by a run with other hyperparameters ({shown}); "
            "resuming it would mix two runs",
            "use a fresh --checkpoint-dir (train-ec2: another --run-name), or delete that "
            "checkpoint.pt to train from scratch",
        )
