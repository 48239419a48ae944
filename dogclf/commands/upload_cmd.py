"""`dogclf upload DATA_DIR`: check the dataset, then sync it to S3 (parallel, resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dogclf.commands.options import DRY_RUN_OPTION, JSON_OPTION


def upload(
    ctx: typer.Context,
    data_dir: Path | None = typer.Argument(
        None, help="dogImages folder with train/ valid/ test/ \\[default: data.local_dir]."
    ),
    delete: bool = typer.Option(
        False, "--delete", help="Remove objects under the data prefix that are no longer local."
    ),
    create_bucket: bool = typer.Option(
        False,
        "--create-bucket",
        help="Create aws.bucket if missing (private, encrypted, TLS-only); also aws.create_bucket.",
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=128, help="Parallel uploads \\[default: data.upload_workers]."
    ),
    check_images: bool | None = typer.Option(
        None,
        "--check-images/--no-check-images",
        help="Decode every image first \\[default: data.check_images].",
    ),
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check the dataset layout, then sync it to s3://bucket/prefix/stage/data/."""
    from rich.filesize import decimal

    from dogclf import render
    from dogclf.aws.s3 import plan_bucket
    from dogclf.aws.s3_sync import PartSizes, SyncPlan, local_files, plan_sync, run_sync
    from dogclf.aws.session import AwsContext
    from dogclf.commands.context import state
    from dogclf.commands.plans import apply_plan, show_plan
    from dogclf.errors import ConfigError, DatasetError
    from dogclf.model.dataset_check import check_layout
    from dogclf.plan import Action, Plan

    cfg = state(ctx).config()
    root = data_dir or cfg.data.local_dir
    if root is None:
        raise ConfigError(
            "no dataset folder given", "pass DATA_DIR, or set data.local_dir in dogclf.toml"
        )
    workers = workers or cfg.data.upload_workers
    decode = cfg.data.check_images if check_images is None else check_images
    with render.err.status(f"checking {root}", spinner="dots"):
        report = check_layout(root, decode_images=decode, workers=min(workers, 16))
    for warning in report.warnings:
        render.warn(warning)
    if report.errors:
        raise DatasetError(
            f"{root} is not a usable dogImages folder:\n" + "\n".join(report.errors),
            "fix the problems listed (train/ valid/ test/ with the same NNN.Breed folders)",
        )
    render.success(f"dataset ok: {report.summary()}")

    uri = cfg.s3_prefix("data") + "/"
    bucket = cfg.aws.bucket
    prefix = uri.removeprefix(f"s3://{bucket}/")
    aws = AwsContext.from_config(cfg)
    plan = Plan(f"upload {root} -> {uri}")
    plan_bucket(plan, aws, cfg, create=create_bucket or cfg.aws.create_bucket)
    parts = PartSizes.from_mb(cfg.data.multipart_threshold_mb)
    files = local_files(root, report.files, prefix)
    if any(s.action is Action.CREATE for s in plan.steps):  # a new bucket holds nothing yet
        sync = SyncPlan(str(bucket), prefix, to_upload=files)
    else:
        with render.err.status(f"comparing with {uri}", spinner="dots"):
            sync = plan_sync(
                aws, files, str(bucket), prefix, parts=parts, delete=delete, workers=workers
            )
    _add_sync_steps(plan, sync, decimal)
    dataset = {"root": str(root), "classes": len(report.classes), "images": len(files)}
    if show_plan(plan, dry_run=dry_run, as_json=as_json, uri=uri, dataset=dataset):
        return
    apply_plan(plan)  # the bucket; the objects follow with their own progress bar
    if sync.to_upload:
        with _RichProgress() as progress:
            result = run_sync(aws, sync, parts=parts, workers=workers, progress=progress)
    else:
        result = run_sync(aws, sync, parts=parts, workers=workers)
    if as_json:
        render.print_json({"uri": uri, "dataset": dataset, **result.as_dict()})
        return
    rate = result.uploaded_bytes / result.seconds if result.seconds else 0.0
    render.out.print(
        f"uploaded {result.uploaded} files ({decimal(result.uploaded_bytes)}, "
        f"{decimal(int(rate))}/s), {result.unchanged} unchanged, {result.deleted} deleted "
        f"-> {uri}",
        highlight=False,
    )


def _add_sync_steps(plan: Any, sync: Any, size: Any) -> None:
    from dogclf.plan import Action

    if sync.to_upload:
        plan.add(
            Action.CREATE,
            "s3 objects",
            sync.uri,
            f"upload {len(sync.to_upload)} files ({size(sync.upload_bytes)})",
        )
    if sync.unchanged or not sync.to_upload:
        plan.add(Action.NOOP, "s3 objects", sync.uri, f"{len(sync.unchanged)} files unchanged")
    if sync.to_delete:
        plan.add(
            Action.DELETE,
            "s3 objects",
            sync.uri,
            f"delete {len(sync.to_delete)} objects no longer local",
        )


class _RichProgress:
    """Files, bytes and rate on stderr, for dogclf.aws.s3_sync.Progress."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from dogclf import render

        self._progress = Progress(
            TextColumn("upload {task.fields[files]}/{task.fields[total_files]} files"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=render.err,
        )
        self._task: Any = None
        self._files = 0

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, files: int, total_bytes: int) -> None:
        self._task = self._progress.add_task(
            "upload", total=total_bytes, files=0, total_files=files
        )

    def advance(self, files: int, nbytes: int) -> None:
        self._files += files
        self._progress.update(self._task, advance=nbytes, files=self._files)


def register(app: typer.Typer) -> None:
    app.command("upload")(upload)
