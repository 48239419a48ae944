"""One `train-ec2` run as a plan: the data (a local folder, or the S3 data prefix downloaded
first), the training core on this host (in this process, or under torchrun), then the model
published to S3 (aws/artifacts.publish_model). It lives in commands/ because it joins the
training core and aws/, which never import each other; what it shows, it shows through the
`Ec2Display` the command passes in (rich stays in the command).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dogclf.errors import ConfigError, DatasetError, DogclfError, ResourceFailedError
from dogclf.plan import Action, Plan

if TYPE_CHECKING:
    from dogclf.aws.s3_sync import DownloadPlan, Progress
    from dogclf.aws.session import AwsContext
    from dogclf.config import DogclfConfig, TrainingSection

DEVICES = ("auto", "cpu", "cuda")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
TAIL_LINES = 15


class Ec2Display(Protocol):
    """How the command shows the slow parts (rich spinners and progress bars)."""

    def listing(self, uri: str) -> AbstractContextManager[Any]: ...

    def downloading(self) -> AbstractContextManager[Progress]: ...

    def training(self, epochs: int) -> AbstractContextManager[Callable[[str], None]]: ...


@dataclass
class Ec2Options:
    """The command line of `train-ec2`, minus rendering (--json, --dry-run)."""

    data: str | None
    workdir: Path
    run_name: str | None
    overrides: dict[str, Any]  # TrainingSection field -> value; None = not given
    nproc_per_node: int = 1
    device: str = "auto"
    upload: bool = True


@dataclass
class Ec2Run:
    name: str
    run_dir: Path
    training: TrainingSection
    model_uri: str | None
    plan: Plan
    outcome: dict[str, Any] = field(default_factory=dict)
    model_dir: Path = field(init=False)  # what the training core writes
    tarball: Path = field(init=False)  # model_dir packed, as SageMaker would

    def __post_init__(self) -> None:
        self.model_dir = self.run_dir / "model"
        self.tarball = self.run_dir / "model.tar.gz"

    def metrics(self) -> dict[str, Any]:
        """This run's metrics.json (what the training step returned, else the file)."""
        if self.outcome.get("metrics"):
            return dict(self.outcome["metrics"])
        return dict(json.loads((self.model_dir / "metrics.json").read_text(encoding="utf-8")))

    def result(self) -> dict[str, Any]:
        metrics = self.metrics()
        return {
            "run_name": self.name,
            "model_dir": str(self.model_dir),
            "model_tar": str(self.tarball),
            "model_data": self.model_uri,
            "epochs_run": metrics.get("epochs_run"),
            "best_epoch": metrics.get("best_epoch"),
            "valid_accuracy": metrics.get("valid", {}).get("accuracy"),
            "test_accuracy": metrics.get("test", {}).get("accuracy"),
            "test_loss": metrics.get("test", {}).get("loss"),
            # "built" / "reused" and the cache pass's images/s; None: no frozen backbone
            "feature_cache": metrics.get("feature_cache"),
        }


def training_section(cfg: DogclfConfig, overrides: dict[str, Any]) -> TrainingSection:
    """[training] with the command-line overrides, validated like dogclf.toml."""
    from pydantic import ValidationError

    from dogclf.config import TrainingSection, format_validation_error

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


def run_name(given: str | None) -> str:
    name = given or "ec2-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if not RUN_NAME.fullmatch(name):
        raise DogclfError(
            f"--run-name {name!r} is not usable", "letters, digits, . _ - (63 at most)"
        )
    return name


def data_spec(cfg: DogclfConfig, data: str | None) -> str:
    """--data, else data.local_dir, else the configured S3 data prefix."""
    spec = data or (str(cfg.data.local_dir) if cfg.data.local_dir else None)
    if spec is not None:
        return spec
    if not cfg.aws.bucket:
        raise ConfigError(
            "no training data: neither --data nor data.local_dir is set, and there is no "
            "aws.bucket to read the uploaded data from",
            "pass --data DIR (or s3://...), set data.local_dir, or set aws.bucket after `dogclf upload`",
        )
    return cfg.s3_prefix("data")


def model_uri(cfg: DogclfConfig, name: str, upload: bool) -> str | None:
    if not upload:
        return None
    try:
        return cfg.s3_prefix("models", name, "output", "model.tar.gz")
    except ConfigError as exc:
        raise ConfigError(
            exc.message, "set aws.bucket, or pass --no-upload to keep the model local"
        ) from None


def plan_ec2_run(cfg: DogclfConfig, options: Ec2Options, display: Ec2Display) -> Ec2Run:
    """Checks, then the plan: data, training run, upload and pointer (each maybe a no-op)."""
    from dogclf.errors import require_extra

    if options.device not in DEVICES:
        raise DogclfError(
            f"--device {options.device!r} is not one of auto, cpu, cuda", "pick one of them"
        )
    training = training_section(cfg, options.overrides)
    name = run_name(options.run_name)
    workdir = options.workdir.expanduser().resolve()
    spec = data_spec(cfg, options.data)
    uri = model_uri(cfg, name, options.upload)
    require_extra("torch", "torch", "train-ec2")
    aws: AwsContext | None = None
    if spec.startswith("s3://") or uri is not None:
        from dogclf.aws.session import AwsContext

        aws = AwsContext.from_config(cfg)
    run = Ec2Run(name, workdir / "runs" / name, training, uri, Plan(f"train-ec2 run {name}"))
    data_dir = _plan_data(run.plan, aws, cfg, spec, workdir, display)
    done = run.tarball.is_file() and (run.model_dir / "metrics.json").is_file()
    _plan_training(run, options, data_dir, done, display)
    if aws is not None and uri is not None:
        from dogclf.aws.artifacts import plan_publish

        plan_publish(
            run.plan,
            aws,
            cfg,
            tarball=run.tarball,
            model_uri=uri,
            source=f"train-ec2:{name}",
            label=f"run {name}",
            metrics=run.metrics,  # the pointer keeps its share (pointer_metrics)
            reuse=done,
        )
    return run


def _plan_data(
    plan: Plan, aws: Any, cfg: DogclfConfig, spec: str, workdir: Path, display: Ec2Display
) -> Path:
    """The data step (S3: a download or a no-op); returns the local dataset folder."""
    if not spec.startswith("s3://"):
        local = Path(spec).expanduser().resolve()
        if not local.is_dir():
            raise DogclfError(
                f"--data {spec}: no such folder", "pass a dogImages folder or s3://..."
            )
        return local
    from dogclf.aws.s3_sync import plan_download

    local = workdir / "data" / cache_name(spec)
    with display.listing(spec):
        download = plan_download(aws, spec.rstrip("/") + "/", local)
    if not download.present and not download.to_fetch:
        raise DatasetError(
            f"no data under {spec}",
            "upload it first with `dogclf upload DATA_DIR`, or pass --data DIR",
        )
    if download.to_fetch:
        plan.add(
            Action.CREATE,
            "local data",
            str(local),
            f"download {len(download.to_fetch)} files ({download.fetch_bytes / 1e6:.1f} MB) "
            f"from {spec}; {download.present} already here",
            lambda: _download(aws, download, cfg.data.upload_workers, display),
        )
    else:
        plan.add(
            Action.NOOP, "local data", str(local), f"all {download.present} files already here"
        )
    return local


def _download(aws: Any, download: DownloadPlan, workers: int, display: Ec2Display) -> int:
    from dogclf.aws.s3_sync import run_download

    with display.downloading() as progress:
        return run_download(aws, download, workers=workers, progress=progress)


def _plan_training(
    run: Ec2Run, options: Ec2Options, data_dir: Path, done: bool, display: Ec2Display
) -> None:
    if done:
        run.plan.add(Action.NOOP, "training run", run.name, f"already finished: {run.tarball}")
        return
    nproc = options.nproc_per_node
    where = f"{nproc} processes (torchrun)" if nproc > 1 else "this process"
    resume = (run.run_dir / "checkpoints" / "checkpoint.pt").is_file()
    run.plan.add(
        Action.UPDATE if resume else Action.CREATE,
        "training run",
        run.name,
        ("resume from its checkpoint: " if resume else "")
        + f"{hps_summary(run.training)} on {options.device} in {where}",
        lambda: run.outcome.update(
            metrics=run_training(run, data_dir, options.device, nproc, display)
        ),
    )


def cache_name(uri: str) -> str:
    """A folder name per S3 data prefix, so two configs never mix their downloads."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", uri.removeprefix("s3://")).strip("_")


def hps_summary(training: TrainingSection) -> str:
    return (
        f"{training.arch}, {training.epochs} epochs, batch {training.batch_size}, lr {training.lr:g}"
        + (", frozen backbone" if training.freeze_backbone else "")
        + (", pretrained" if training.pretrained else "")
    )


class TrainingLog:
    """The training core's output lines: appended to train.log, the last ones kept for an
    error message, each handed on to `show`."""

    def __init__(self, path: Path, show: Callable[[str], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.show = show
        self.tail: list[str] = []
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def line(self, text: str) -> None:
        self._file.write(text + "\n")
        self._file.flush()
        self.tail = [*self.tail[-(TAIL_LINES - 1) :], text]
        self.show(text)


def run_training(
    run: Ec2Run, data_dir: Path, device: str, nproc: int, display: Ec2Display
) -> dict[str, Any]:
    """The training core on this host; returns its metrics.json."""
    from dogclf.model.hyperparameters import hyperparameters_argv, hyperparameters_from_config

    argv = [
        *hyperparameters_argv(hyperparameters_from_config(run.training)),
        *("--data-dir", str(data_dir), "--model-dir", str(run.model_dir)),
        *("--checkpoint-dir", str(run.run_dir / "checkpoints")),
        *("--pack", str(run.tarball), "--device", device),
    ]
    with (
        display.training(run.training.epochs) as show,
        TrainingLog(run.run_dir / "train.log", show) as log,
    ):
        if nproc > 1:
            return _train_torchrun(argv, nproc, run.model_dir, log)
        return _train_in_process(argv, log)


def _train_in_process(argv: list[str], log: TrainingLog) -> dict[str, Any]:
    from dogclf.training import train

    args = train.parse_args(argv, environ={})  # SM_* of this shell must not steer it
    result = train.main(args, train.Hooks(log=log.line))
    return dict(result.metrics)


def _train_torchrun(
    argv: list[str], nproc: int, model_dir: Path, log: TrainingLog
) -> dict[str, Any]:
    from dogclf.model.hyperparameters import ENTRY_MODULE

    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
        *(f"--nproc_per_node={nproc}", "-m", ENTRY_MODULE, *argv),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            log.line(line.rstrip("\n"))
    code = proc.wait()
    if code != 0:
        raise ResourceFailedError(
            f"torchrun training failed with exit code {code}; last lines:\n" + "\n".join(log.tail),
            f"full log: {log.path}",
        )
    return dict(json.loads((model_dir / "metrics.json").read_text(encoding="utf-8")))
