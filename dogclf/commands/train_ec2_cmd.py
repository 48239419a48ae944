"""`dogclf train-ec2`: the training core on this host (an EC2 box, a laptop, CI).

Data from a local folder or the configured S3 data prefix (downloaded first, files already
here with the same size skipped), training in this process (or under torchrun with
--nproc-per-node > 1), rich progress per epoch, then model.tar.gz uploaded to
models/<run>/output/ and the latest-model pointer moved to it. `--no-upload` needs no AWS.
Rerunning with the same --run-name resumes that run from its last checkpoint.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from dogclf.commands.options import DRY_RUN_OPTION, JSON_OPTION

DEFAULT_WORKDIR = Path(".dogclf")
_STEP_LINE = re.compile(r"^epoch \d+/\d+ step \[\d+\]")


@dataclass
class RemoteFile:
    key: str
    size: int
    path: Path


@dataclass
class DataSource:
    """Where the dataset comes from; for S3, what must be fetched to `local`."""

    local: Path
    uri: str | None = None  # s3://... when the data lives in S3
    bucket: str = ""
    to_fetch: list[RemoteFile] = field(default_factory=list)
    present: int = 0  # files already here with the right size


def _training_section(cfg: Any, overrides: dict[str, Any]) -> Any:
    """[training] with the command-line overrides, validated like dogclf.toml."""
    from pydantic import ValidationError

    from dogclf.config import TrainingSection, format_validation_error
    from dogclf.errors import ConfigError

    values = {**cfg.training.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return TrainingSection.model_validate(values)
    except ValidationError as exc:
        source = "dogclf.toml + train-ec2 options"
        lines = format_validation_error(exc, source).splitlines()
        raise ConfigError(
            "\n".join(line.replace(f"{source}: ", f"{source}: training.", 1) for line in lines),
            "fix the option values",
        ) from None


def _s3_data_source(aws: Any, uri: str, dest: Path) -> DataSource:
    """List the S3 data prefix and compare with what `dest` already holds."""
    from dogclf.aws.artifacts import parse_s3_uri
    from dogclf.aws.s3 import list_objects_parallel
    from dogclf.errors import DatasetError

    bucket, prefix = parse_s3_uri(uri.rstrip("/") + "/")
    source = DataSource(local=dest, uri=uri, bucket=bucket)
    for obj in list_objects_parallel(aws, bucket, prefix):
        relative = obj.key[len(prefix) :]
        if not relative or relative.endswith("/"):
            continue  # folder markers
        path = dest / relative
        if path.is_file() and path.stat().st_size == obj.size:
            source.present += 1
        else:
            source.to_fetch.append(RemoteFile(obj.key, obj.size, path))
    if not source.present and not source.to_fetch:
        raise DatasetError(
            f"no data under {uri}",
            "upload it first with `dogclf upload DATA_DIR`, or pass --data DIR",
        )
    return source


def _download(aws: Any, source: DataSource, workers: int) -> int:
    """Fetch the missing files in parallel (one simple loop: dogclf/aws/s3_sync.py only
    uploads). Each file lands under a temporary name first, so an interrupted run never
    leaves a truncated image that a re-run would take for complete."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from dogclf import render
    from dogclf.aws.session import aws_errors

    s3 = aws.client("s3")

    def fetch(item: RemoteFile) -> int:
        item.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = item.path.with_name(f".{item.path.name}.part")
        with aws_errors(f"download s3://{source.bucket}/{item.key}"):
            s3.download_file(source.bucket, item.key, str(tmp))
        os.replace(tmp, item.path)
        return item.size

    total = sum(f.size for f in source.to_fetch)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=render.err, transient=True) as progress:
        task = progress.add_task(f"downloading {len(source.to_fetch)} files", total=total)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dogclf-download") as pool:
            futures = [pool.submit(fetch, item) for item in source.to_fetch]
            try:
                for fut in as_completed(futures):
                    progress.advance(task, fut.result())
            finally:
                for fut in futures:
                    fut.cancel()
    return len(source.to_fetch)


class EpochProgress:
    """Turns the training core's output lines into a rich progress bar on stderr and a log."""

    def __init__(self, log_path: Path, epochs: int) -> None:
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
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        self.tail: list[str] = []

    def __enter__(self) -> EpochProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        self.log.close()

    def line(self, text: str) -> None:
        from dogclf.model.metrics import EPOCH_LINE, parse_metrics

        self.log.write(text + "\n")
        self.log.flush()
        self.tail = [*self.tail[-14:], text]
        if parse_metrics(text):
            return  # metric lines are for SageMaker and the log; the epoch line says it
        epoch = EPOCH_LINE.match(text)
        if _STEP_LINE.match(text):
            self.progress.update(self.task, description=text.split(" step ")[-1].strip())
            return
        if epoch:
            self.progress.update(
                self.task,
                completed=int(epoch["epoch"]),
                total=int(epoch["epochs"]),
                description="training",
            )
        self.progress.console.print(text, highlight=False, markup=False)


def _train_in_process(argv: list[str], out: EpochProgress) -> dict[str, Any]:
    from dogclf.training import train

    args = train.parse_args(argv, environ={})  # SM_* of this shell must not steer it
    result = train.main(args, train.Hooks(log=out.line))
    return result.metrics


def _train_torchrun(
    argv: list[str], nproc: int, model_dir: Path, out: EpochProgress
) -> dict[str, Any]:
    import json

    from dogclf.errors import ResourceFailedError
    from dogclf.model.hyperparameters import ENTRY_MODULE

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        ENTRY_MODULE,
        *argv,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            out.line(line.rstrip("\n"))
    code = proc.wait()
    if code != 0:
        raise ResourceFailedError(
            f"torchrun training failed with exit code {code}; last lines:\n" + "\n".join(out.tail),
            f"full log: {out.log.name}",
        )
    return dict(json.loads((model_dir / "metrics.json").read_text(encoding="utf-8")))


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
    arch: str | None = typer.Option(None, "--arch", help="\\[default: training.arch]"),
    epochs: int | None = typer.Option(None, "--epochs", help="\\[default: training.epochs]"),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="\\[default: training.batch_size]"
    ),
    lr: float | None = typer.Option(None, "--lr", help="\\[default: training.lr]"),
    image_size: int | None = typer.Option(
        None, "--image-size", help="\\[default: training.image_size]"
    ),
    num_workers: int | None = typer.Option(
        None, "--num-workers", help="\\[default: training.num_workers, else the host's CPUs]"
    ),
    pretrained: bool | None = typer.Option(
        None, "--pretrained/--no-pretrained", help="\\[default: training.pretrained]"
    ),
    freeze_backbone: bool | None = typer.Option(
        None, "--freeze-backbone/--no-freeze-backbone", help="\\[default: training.freeze_backbone]"
    ),
    nproc_per_node: int = typer.Option(
        1, "--nproc-per-node", min=1, help="Processes (GPUs) on this host; > 1 runs torchrun."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    no_upload: bool = typer.Option(
        False, "--no-upload", help="Keep the model local: no S3 upload, no pointer, no AWS."
    ),
    as_json: bool = JSON_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
) -> None:
    """Train on this host with the shared training core; upload model.tar.gz and point
    `latest` at it."""
    from dogclf import render
    from dogclf.commands.context import state
    from dogclf.commands.plans import apply_plan, render_plan
    from dogclf.errors import ConfigError, DogclfError, require_extra
    from dogclf.plan import Action, Plan

    cfg = state(ctx).config()
    if device not in ("auto", "cpu", "cuda"):
        raise DogclfError(f"--device {device!r} is not one of auto, cpu, cuda", "pick one of them")
    training = _training_section(
        cfg,
        {
            "arch": arch,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "image_size": image_size,
            "num_workers": num_workers,
            "pretrained": pretrained,
            "freeze_backbone": freeze_backbone,
        },
    )
    name = run_name or "ec2-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
        raise DogclfError(
            f"--run-name {name!r} is not usable", "letters, digits, . _ - (63 at most)"
        )
    workdir = workdir.expanduser().resolve()
    run_dir = workdir / "runs" / name
    model_dir, tarball = run_dir / "model", run_dir / "model.tar.gz"

    # Where the data comes from, and which AWS calls this run needs.
    data_spec = data or (str(cfg.data.local_dir) if cfg.data.local_dir else None)
    if data_spec is None:
        if not cfg.aws.bucket:
            raise ConfigError(
                "no training data: neither --data nor data.local_dir is set, and there is no "
                "aws.bucket to read the uploaded data from",
                "pass --data DIR (or s3://...), set data.local_dir, or set aws.bucket after `dogclf upload`",
            )
        data_spec = cfg.s3_prefix("data")
    needs_aws = data_spec.startswith("s3://") or not no_upload
    model_uri = None
    if not no_upload:
        try:
            model_uri = cfg.s3_prefix("models", name, "output", "model.tar.gz")
        except ConfigError as exc:
            raise ConfigError(
                exc.message, "set aws.bucket, or pass --no-upload to keep the model local"
            ) from None
    require_extra("torch", "torch", "train-ec2")

    aws: Any = None
    if needs_aws:
        from dogclf.aws.session import AwsContext

        aws = AwsContext.from_config(cfg)

    plan = Plan(f"train-ec2 run {name}")
    source: DataSource
    if data_spec.startswith("s3://"):
        with render.err.status(f"listing {data_spec}", spinner="dots"):
            source = _s3_data_source(aws, data_spec, workdir / "data" / _cache_name(data_spec))
        mb = sum(f.size for f in source.to_fetch) / 1e6
        if source.to_fetch:
            plan.add(
                Action.CREATE,
                "local data",
                str(source.local),
                f"download {len(source.to_fetch)} files ({mb:.1f} MB) from {data_spec}; "
                f"{source.present} already here",
                lambda: _download(aws, source, cfg.data.upload_workers),
            )
        else:
            plan.add(
                Action.NOOP,
                "local data",
                str(source.local),
                f"all {source.present} files already here",
            )
    else:
        source = DataSource(local=Path(data_spec).expanduser().resolve())
        if not source.local.is_dir():
            raise DogclfError(
                f"--data {data_spec}: no such folder", "pass a dogImages folder or s3://..."
            )

    done = tarball.is_file() and (model_dir / "metrics.json").is_file()
    hps = _hps_summary(training)
    outcome: dict[str, Any] = {}
    if done:
        plan.add(Action.NOOP, "training run", name, f"already finished: {tarball}")
    else:
        where = f"{nproc_per_node} processes (torchrun)" if nproc_per_node > 1 else "this process"
        resume = (run_dir / "checkpoints" / "checkpoint.pt").is_file()
        plan.add(
            Action.UPDATE if resume else Action.CREATE,
            "training run",
            name,
            ("resume from its checkpoint: " if resume else "") + f"{hps} on {device} in {where}",
            lambda: outcome.update(
                metrics=_run_training(training, source.local, run_dir, device, nproc_per_node)
            ),
        )
    if model_uri is not None:
        _plan_upload(plan, aws, cfg, name, tarball, model_uri, done)
    render_plan(plan)
    if dry_run:
        if as_json:
            render.print_json({"dry_run": True, "plan": plan.as_dict()})
        return
    apply_plan(plan)

    import json

    metrics = outcome.get("metrics") or json.loads(
        (model_dir / "metrics.json").read_text(encoding="utf-8")
    )
    result = {
        "run_name": name,
        "model_dir": str(model_dir),
        "model_tar": str(tarball),
        "model_data": model_uri,
        "epochs_run": metrics.get("epochs_run"),
        "best_epoch": metrics.get("best_epoch"),
        "valid_accuracy": metrics.get("valid", {}).get("accuracy"),
        "test_accuracy": metrics.get("test", {}).get("accuracy"),
        "test_loss": metrics.get("test", {}).get("loss"),
    }
    if as_json:
        render.print_json(result)
        return
    from rich.table import Table

    table = Table(show_header=False, show_edge=False, box=None)
    for key, value in result.items():
        if value is not None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    render.out.print(table)


def _cache_name(uri: str) -> str:
    """A folder name per S3 data prefix, so two configs never mix their downloads."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", uri.removeprefix("s3://")).strip("_")


def _hps_summary(training: Any) -> str:
    return (
        f"{training.arch}, {training.epochs} epochs, batch {training.batch_size}, lr {training.lr:g}"
        + (", frozen backbone" if training.freeze_backbone else "")
        + (", pretrained" if training.pretrained else "")
    )


def _run_training(
    training: Any, data_dir: Path, run_dir: Path, device: str, nproc: int
) -> dict[str, Any]:
    from dogclf.model.hyperparameters import hyperparameters_from_config

    model_dir = run_dir / "model"
    argv: list[str] = []
    for key, value in hyperparameters_from_config(training).items():
        argv += [f"--{key}", value]
    argv += [
        "--data-dir",
        str(data_dir),
        "--model-dir",
        str(model_dir),
        "--checkpoint-dir",
        str(run_dir / "checkpoints"),
        "--pack",
        str(run_dir / "model.tar.gz"),
        "--device",
        device,
    ]
    with EpochProgress(run_dir / "train.log", training.epochs) as out:
        if nproc > 1:
            return _train_torchrun(argv, nproc, model_dir, out)
        return _train_in_process(argv, out)


def _plan_upload(
    plan: Any, aws: Any, cfg: Any, name: str, tarball: Path, model_uri: str, done: bool
) -> None:
    """Upload step and pointer step, each a no-op when S3 already has it."""
    from dogclf.aws.artifacts import (
        LatestModel,
        latest_pointer_uri,
        parse_s3_uri,
        read_latest,
        upload_file,
        write_latest,
    )
    from dogclf.aws.session import get_or_none
    from dogclf.plan import Action

    bucket, key = parse_s3_uri(model_uri)
    head = get_or_none(f"check {model_uri}", aws.client("s3").head_object, Bucket=bucket, Key=key)
    same = done and head is not None and int(head["ContentLength"]) == tarball.stat().st_size
    if same:
        plan.add(Action.NOOP, "s3 object", model_uri, "model.tar.gz already uploaded")
    else:
        plan.add(
            Action.UPDATE if head is not None else Action.CREATE,
            "s3 object",
            model_uri,
            "upload model.tar.gz",
            lambda: upload_file(aws, tarball, model_uri),
        )
    latest = read_latest(aws, cfg)
    if latest is not None and latest.model_data == model_uri and same:
        plan.add(
            Action.NOOP,
            "s3 object",
            latest_pointer_uri(cfg),
            f"latest already points to run {name}",
        )
        return

    def point() -> str:
        import json

        metrics = json.loads(
            (tarball.parent / "model" / "metrics.json").read_text(encoding="utf-8")
        )
        summary = {
            k: metrics[k]
            for k in ("train", "valid", "test", "best_epoch", "epochs_run")
            if k in metrics
        }
        return write_latest(
            aws, cfg, LatestModel(model_data=model_uri, source=f"train-ec2:{name}", metrics=summary)
        )

    plan.add(
        Action.UPDATE if latest is not None else Action.CREATE,
        "s3 object",
        latest_pointer_uri(cfg),
        f"point latest at run {name}",
        point,
    )


def register(app: typer.Typer) -> None:
    app.command("train-ec2")(train_ec2)
