"""`dogclf upload DATA_DIR`: check the dataset, then sync it to S3 (parallel, resumable)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer

from dogclf.commands.options import DRY_RUN_OPTION, JSON_OPTION
from dogclf.commands.progress import TransferBar

CREATE_BUCKET_HELP = (
    "Create aws.bucket if missing (private, encrypted, TLS-only); also aws.create_bucket."
)
CHECK_IMAGES_OPTION = typer.Option(
    None,
    "--check-images/--no-check-images",
    help="Decode every image first \\[default: data.check_images].",
)


def upload(
    ctx: typer.Context,
    data_dir: Path | None = typer.Argument(
        None, help="dogImages folder with train/ valid/ test/ \\[default: data.local_dir]."
    ),
    delete: bool = typer.Option(
        False, "--delete", help="Remove objects under the data prefix that are no longer local."
    ),
    create_bucket: bool = typer.Option(False, "--create-bucket", help=CREATE_BUCKET_HELP),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=128, help="Parallel uploads \\[default: data.upload_workers]."
    ),
    check_images: bool | None = CHECK_IMAGES_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check the dataset layout, then sync it to s3://bucket/prefix/stage/data/."""
    from rich.filesize import decimal

    from dogclf import render
    from dogclf.aws.dataset_upload import UploadOptions, plan_dataset_upload
    from dogclf.aws.session import AwsContext
    from dogclf.commands.context import state
    from dogclf.commands.plans import apply_plan, show_plan
    from dogclf.errors import ConfigError

    cfg = state(ctx).config()
    root = data_dir or cfg.data.local_dir
    if root is None:
        raise ConfigError(
            "no dataset folder given", "pass DATA_DIR, or set data.local_dir in dogclf.toml"
        )
    workers = workers or cfg.data.upload_workers
    decode = cfg.data.check_images if check_images is None else check_images
    report = _check_dataset(root, decode, workers)
    aws = AwsContext.from_config(cfg)
    options = UploadOptions(create_bucket, delete, workers)
    upload = plan_dataset_upload(
        aws, cfg, root, report.files, options, size_text=decimal, status=_spinner
    )
    dataset = {"root": str(root), "classes": len(report.classes), "images": len(report.files)}
    if show_plan(upload.plan, dry_run=dry_run, as_json=as_json, uri=upload.uri, dataset=dataset):
        return
    apply_plan(upload.plan)  # the bucket; the objects follow with their own progress bar
    with TransferBar("upload") if upload.sync.to_upload else nullcontext() as progress:
        result = upload.run(aws, progress)
    if as_json:
        render.print_json({"uri": upload.uri, "dataset": dataset, **result.as_dict()})
        return
    _print_done(upload.uri, result)


def _spinner(text: str) -> Any:
    from dogclf import render

    return render.err.status(text, spinner="dots")


def _print_done(uri: str, result: Any) -> None:
    from rich.filesize import decimal

    from dogclf import render

    rate = result.uploaded_bytes / result.seconds if result.seconds else 0.0
    render.out.print(
        f"uploaded {result.uploaded} files ({decimal(result.uploaded_bytes)}, "
        f"{decimal(int(rate))}/s), {result.unchanged} unchanged, {result.deleted} deleted "
        f"-> {uri}",
        highlight=False,
    )


def _check_dataset(root: Path, decode: bool, workers: int) -> Any:
    """upload's pre-flight check (model/dataset_check.py), its findings on stderr."""
    from dogclf import render
    from dogclf.errors import DatasetError
    from dogclf.model.dataset_check import check_layout

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
    return report


def register(app: typer.Typer) -> None:
    app.command("upload")(upload)
