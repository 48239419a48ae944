"""Save and resume training state: one `checkpoint.pt` per run, replaced every epoch.

On SageMaker the checkpoint dir is /opt/ml/checkpoints, which SageMaker syncs to S3 and
restores when a managed spot job restarts; locally it is any folder. Writes go to a
temporary file and are renamed into place, so a kill during a save leaves the previous
checkpoint intact rather than a truncated one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dogclf.errors import DogclfError

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1


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


def save_checkpoint(checkpoint_dir: Path, state: dict[str, Any]) -> Path:
    """`state`: model, optimizer, scheduler, epoch (0-based, completed), best, history..."""
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
