"""Options shared by many commands, defined once so they read the same everywhere."""

from __future__ import annotations

from typing import Any

import typer

JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
DRY_RUN_OPTION = typer.Option(
    False, "--dry-run", help="Print the plan (create/update/delete/no-op) and change nothing."
)
YES_OPTION = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
# Seconds between status polls; tests (and the demo, against the emulator) pass 0.
POLL_INTERVAL_OPTION = typer.Option(
    None, "--poll-interval", min=0, hidden=True, help="Seconds between status polls."
)


def _training(flags: str, key: str, default: str = "") -> Any:
    """An override of `[training] key`, unset (None) unless given on the command line."""
    return typer.Option(None, flags, help=f"\\[default: training.{key}{default}]")


# The [training] overrides, in TrainingSection's field names (see training_overrides()).
ARCH_OPTION = _training("--arch", "arch")
EPOCHS_OPTION = _training("--epochs", "epochs")
BATCH_SIZE_OPTION = _training("--batch-size", "batch_size")
LR_OPTION = _training("--lr", "lr")
IMAGE_SIZE_OPTION = _training("--image-size", "image_size")
NUM_WORKERS_OPTION = _training("--num-workers", "num_workers", ", else the host's CPUs")
PRETRAINED_OPTION = _training("--pretrained/--no-pretrained", "pretrained")
FREEZE_BACKBONE_OPTION = _training("--freeze-backbone/--no-freeze-backbone", "freeze_backbone")
