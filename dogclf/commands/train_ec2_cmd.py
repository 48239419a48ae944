"""`dogclf train-ec2`: the training core on this host (an EC2 box, a laptop, CI).

Data from a local folder or the configured S3 data prefix (downloaded first, files already
here with the same size skipped), training in this process (or under torchrun with
--nproc-per-node > 1), rich progress per epoch, then model.tar.gz uploaded to
models/<run>/output/ and the latest-model pointer moved to it. `--no-upload` needs no AWS.
Rerunning with the same --run-name resumes that run from its last checkpoint.
The run itself is dogclf/commands/train_ec2_run.py; this module parses and renders.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from dogclf.commands import options as opt
from dogclf.commands.progress import TransferBar

DEFAULT_WORKDIR = Path(".dogclf")
_STEP_LINE = re.compile(r"^epoch \d+/\d+ step \[\d+\]")


def train_ec2(
    ctx: typer.Context,
    data: str | None = typer.Option(
        None,
        "--data",
        help="Dataset: a local dogImages folder or s3://... \\[default: data.local_dir, "
        "else the configured S3 data prefix].",
    ),
    workdir: Path = typer.Option(
        DEFAULT_WORKDIR, "--workdir", help="Runs, checkpoints and downloaded data go here."
    ),
    run_name: str | None = typer.Option(
        None, "--run-name", help="Name of the run \\[default: ec2-<UTC time>]; reuse it to resume."
    ),
    arch: str | None = opt.ARCH_OPTION,
    epochs: int | None = opt.EPOCHS_OPTION,
    batch_size: int | None = opt.BATCH_SIZE_OPTION,
    lr: float | None = opt.LR_OPTION,
    image_size: int | None = opt.IMAGE_SIZE_OPTION,
    num_workers: int | None = opt.NUM_WORKERS_OPTION,
    pretrained: bool | None = opt.PRETRAINED_OPTION,
    freeze_backbone: bool | None = opt.FREEZE_BACKBONE_OPTION,
    nproc_per_node: int = typer.Option(
        1, "--nproc-per-node", min=1, help="Processes (GPUs) on this host; > 1 runs torchrun."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    no_upload: bool = typer.Option(
        False, "--no-upload", help="Keep the model local: no S3 upload, no pointer, no AWS."
    ),
    as_json: bool = opt.JSON_OPTION,
    dry_run: bool = opt.DRY_RUN_OPTION,
) -> None:
    """Train on this host with the shared training core; upload model.tar.gz and point
    `latest` at it."""
    from dogclf import render
    from dogclf.commands.context import state
    from dogclf.commands.plans import apply_plan, show_plan
    from dogclf.commands.train_ec2_run import Ec2Options, plan_ec2_run

    overrides = {
        **dict(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size),
        **dict(num_workers=num_workers, pretrained=pretrained, freeze_backbone=freeze_backbone),
    }
    options = Ec2Options(data, workdir, run_name, overrides, nproc_per_node, device, not no_upload)
    run = plan_ec2_run(state(ctx).config(), options, RichDisplay())
    if show_plan(run.plan, dry_run=dry_run, as_json=as_json):
        return
    apply_plan(run.plan)
    result = run.result()
    if as_json:
        render.print_json(result)
        return
    from rich.table import Table

    table = Table(show_header=False, show_edge=False, box=None)
    for key, value in result.items():
        if value is not None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    render.out.print(table)


class RichDisplay:
    """train_ec2_run.Ec2Display on stderr: a spinner, a download bar, an epoch bar."""

    def listing(self, uri: str) -> Any:
        from dogclf import render

        return render.err.status(f"listing {uri}", spinner="dots")

    def downloading(self) -> TransferBar:
        return TransferBar("download", transient=True)

    @contextmanager
    def training(self, epochs: int) -> Iterator[Callable[[str], None]]:
        with EpochProgress(epochs) as progress:
            yield progress.line


class EpochProgress:
    """Turns the training core's output lines into a rich progress bar on stderr."""

    def __init__(self, epochs: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from dogclf import render

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs"),
            TimeElapsedColumn(),
            console=render.err,
        )
        self.task = self.progress.add_task("training", total=epochs)

    def __enter__(self) -> EpochProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def line(self, text: str) -> None:
        from dogclf.model.metrics import EPOCH_LINE, parse_metrics

        if parse_metrics(text):
            return  # metric lines are for SageMaker and the log; the epoch line says it
        if _STEP_LINE.match(text):
            self.progress.update(self.task, description=text.split(" step ")[-1].strip())
            return
        epoch = EPOCH_LINE.match(text)
        if epoch:
            self.progress.update(
                self.task,
                completed=int(epoch["epoch"]),
                total=int(epoch["epochs"]),
                description="training",
            )
        self.progress.console.print(text, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("train-ec2")(train_ec2)
