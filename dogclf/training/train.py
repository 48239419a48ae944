"""The training program: SageMaker entry point, `train-ec2`, `train-sagemaker --local`.

    python -m dogclf.training.train --data-dir DATA --epochs 5 --arch resnet18
    torchrun --nproc_per_node 2 -m dogclf.training.train --data-dir DATA ...

Inside a SageMaker training container the defaults come from the container's environment
(SM_CHANNEL_TRAIN/VALID/TEST, SM_MODEL_DIR, SM_HPS, ...); anywhere else they are local
folders, never a KeyError. Hyperparameters arrive as `--key value` arguments and/or as
JSON in SM_HPS; explicit arguments win.

One epoch: train (shuffled, augmented), evaluate on valid, checkpoint, early-stop check.
At the end the best epoch's weights (by valid accuracy) are evaluated on test and written
as the model artifact; a SIGTERM (SageMaker stopping the job) ends the run the same way at
the next batch, the epoch in progress dropped (dogclf/training/stopping.py). Metric lines
(`valid_accuracy=0.812300;`) are what SageMaker's MetricDefinitions parse; see
dogclf/model/metrics.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (a SageMaker entry_script): find `dogclf`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import contextlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dogclf.errors import DatasetError, DogclfError
from dogclf.model.dataset import SPLITS
from dogclf.model.feature_cache_layout import FOLDER as FEATURE_CACHE_FOLDER
from dogclf.model.hyperparameters import HYPERPARAMETER_FIELDS, hyperparameters_argv
from dogclf.model.metrics import format_metric

if TYPE_CHECKING:  # torch stays a lazy import: the parser works without it
    import torch
    from torch import nn

    from dogclf.training.checkpoint import Progress, Resumable
    from dogclf.training.data import DogImages, Loaders
    from dogclf.training.engine import EpochStats, PrecisionChoice, StepConfig
    from dogclf.training.stopping import StopRequest

# Hyperparameters SageMaker itself adds (e.g. `_tuning_objective_metric` in tuning jobs,
# `sagemaker_*` in framework jobs): accepted and ignored, never "unrecognized".
RESERVED_PREFIXES = ("sagemaker_", "_")


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _env_path(environ: Mapping[str, str], *names: str) -> Path | None:
    for name in names:
        if environ.get(name):
            return Path(environ[name])
    return None


def _default_checkpoint_dir(environ: Mapping[str, str]) -> Path | None:
    explicit = _env_path(environ, "SM_CHECKPOINT_DIR")
    if explicit is not None:
        return explicit
    # SageMaker creates (and syncs to S3) this folder when the job has a CheckpointConfig.
    sagemaker_default = Path("/opt/ml/checkpoints")
    return sagemaker_default if sagemaker_default.is_dir() else None


def checkpoint_dir_for(
    checkpoint_dir: Path | None, model_dir: Path, environ: Mapping[str, str]
) -> Path:
    """The folder this run checkpoints in and resumes from.

    Inside a SageMaker training job (TRAINING_JOB_NAME, set by the platform; the toolkit's
    sagemaker_training/params.py TRAINING_JOB_ENV) it is the job's own subfolder: every trial
    of a tuning job gets the same CheckpointConfig, so the same folder, and a trial must
    not resume another's weights. A spot restart keeps its job name, so it still resumes.
    """
    base = checkpoint_dir or (Path(model_dir).parent / "checkpoints")
    job = environ.get("TRAINING_JOB_NAME", "").strip()
    return base / job if job else base


def feature_cache_root(args: argparse.Namespace) -> Path:
    """The feature cache's folder: beside the per-job checkpoint folders, so every trial of
    a tuning job (one CheckpointConfig S3 URI) and a restarted job find it."""
    if args.feature_cache_dir is not None:
        return Path(args.feature_cache_dir)
    base = args.checkpoint_dir or (Path(args.model_dir).parent / "checkpoints")
    return Path(base) / FEATURE_CACHE_FOLDER


BEST_SO_FAR_EVERY_S = 30.0  # with the feature cache: see TrainingRun.write_best_so_far

Adder = Callable[..., None]  # add(*names, **argparse_kwargs) on one argument group


def _group(parser: argparse.ArgumentParser, title: str) -> Adder:
    group = parser.add_argument_group(title)

    def add(*names: str, **kwargs: Any) -> None:
        # `--batch-size` also answers to `--batch_size` (how people write SageMaker keys).
        aliases = ["--" + n[2:].replace("-", "_") for n in names if "-" in n[2:]]
        group.add_argument(*names, *aliases, **kwargs)

    return add


def _switch(default: bool) -> dict[str, Any]:
    """`--flag`, `--flag true`, `--flag false`: how SageMaker passes booleans."""
    return {"type": parse_bool, "nargs": "?", "const": True, "default": default}


def get_args_parser(
    add_help: bool = True, environ: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="dogclf training core (SageMaker entry point, train-ec2, --local)",
        add_help=add_help,
        allow_abbrev=False,  # `--epoch` must not silently mean `--epochs`
    )
    _data_options(_group(parser, "data"), os.environ if environ is None else environ)
    _model_options(_group(parser, "model"))
    _optimization_options(_group(parser, "optimization"))
    _runtime_options(_group(parser, "runtime"))
    return parser


def _data_options(add: Adder, env: Mapping[str, str]) -> None:
    add(
        "--data-dir",
        type=Path,
        default=_env_path(env, "SM_CHANNEL_TRAINING"),
        help="folder with train/ valid/ test/ (dogImages layout)",
    )
    for split in SPLITS:
        add(
            f"--{split}-dir",
            type=Path,
            default=_env_path(env, f"SM_CHANNEL_{split.upper()}"),
            help=f"the {split} split; default SM_CHANNEL_{split.upper()}, else DATA_DIR/{split}",
        )
    add(
        "--model-dir",
        type=Path,
        default=_env_path(env, "SM_MODEL_DIR") or Path("model"),
        help="where model.pt, labels.json, metrics.json, code/ go (default SM_MODEL_DIR, else ./model)",
    )
    add(
        "--checkpoint-dir",
        type=Path,
        default=_default_checkpoint_dir(env),
        help="checkpoint every epoch and resume from here (default SM_CHECKPOINT_DIR, "
        "/opt/ml/checkpoints on SageMaker, else MODEL_DIR/../checkpoints); inside a "
        "SageMaker job its TRAINING_JOB_NAME subfolder",
    )
    add(
        "--feature-cache-dir",
        type=Path,
        default=None,
        help="where the frozen backbone's feature cache lives (default: the checkpoint "
        "folder's feature-cache/, without the job subfolder: a tuning job's trials share it)",
    )
    add(
        "--feature-cache-from",
        type=Path,
        default=_env_path(env, "SM_CHANNEL_FEATURE_CACHE"),
        help="read-only caches of earlier jobs, one <key>/ folder each, used when "
        "FEATURE_CACHE_DIR has none for this run (default SM_CHANNEL_FEATURE_CACHE: the "
        "channel train-sagemaker adds from the stage's feature-cache prefix)",
    )
    add("--pack", type=Path, default=None, help="also write model.tar.gz to this path")
    add(
        "--bad-images",
        choices=("skip", "fail"),
        default="skip",
        help="an unreadable image file: report its path and skip it, or stop the run",
    )


def _model_options(add: Adder) -> None:
    add(
        "--arch",
        default="resnet50",
        help="torchvision classifier (resnet18/34/50/101, efficientnet_b0/b1, "
        "mobilenet_v3_small/large, convnext_tiny) or tiny_cnn",
    )
    add(
        "--pretrained",
        **_switch(False),
        help="start from ImageNet weights (needs network or a filled torch hub cache)",
    )
    add("--freeze-backbone", **_switch(False), help="train only the new head")
    add(
        "--feature-cache",
        **_switch(True),
        help="with --freeze-backbone: run the backbone once per image and view, store the "
        "features in FEATURE_CACHE_DIR (reused by later runs and tuning trials), train the "
        "head on them",
    )
    add(
        "--augment-views",
        type=int,
        default=0,
        help="feature cache: 0 = each training image once, eval transform; N = N random "
        "training views per image, computed once",
    )


def _optimization_options(add: Adder) -> None:
    add("--epochs", type=int, default=10)
    add("--batch-size", type=int, default=64, help="per process")
    add("--lr", type=float, default=0.001)
    add("--optimizer", choices=("adam", "adamw", "sgd"), default="adamw")
    add("--momentum", type=float, default=0.9, help="sgd only")
    add("--weight-decay", type=float, default=1e-4)
    add("--label-smoothing", type=float, default=0.0)
    add("--lr-scheduler", choices=("cosine", "step", "none"), default="cosine")
    add(
        "--patience",
        type=int,
        default=3,
        help="stop after this many epochs without a better valid accuracy (0 = never)",
    )
    add("--image-size", type=int, default=224)


def _runtime_options(add: Adder) -> None:
    add(
        "--num-workers",
        type=int,
        default=None,
        help="data loader workers per process (default: the host's CPUs / local processes)",
    )
    add(
        "--amp",
        **_switch(True),
        help="mixed precision: on GPU bf16 where native (compute capability >= 8.0), else "
        "fp16 with a GradScaler; on a CPU with native bf16, the frozen backbone in bf16",
    )
    add("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add(
        "--compile",
        **_switch(False),
        help="torch.compile the frozen backbone (one-off compile, then faster steps)",
    )
    add("--seed", type=int, default=0)
    add(
        "--int8-min-agreement",
        type=float,
        default=99.0,
        help="int8 serving only when its top-1 agrees with fp32 on at least this %% of the "
        "test split (above 100: never)",
    )
    add("--print-freq", type=int, default=50, help="log the loss every N steps (0 = off)")


def hps_to_argv(raw: str | None) -> list[str]:
    """SM_HPS (a JSON object) -> ["--key", "value", ...], as SageMaker's drivers pass them."""
    if not raw:
        return []
    try:
        hps = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DogclfError(
            f"SM_HPS is not valid JSON: {exc}", "check the job's hyperparameters"
        ) from None
    texts: dict[str, str] = {}
    for key, value in hps.items():
        if isinstance(value, str):
            # SageMaker may hand over JSON-encoded strings ("\"resnet50\"", "true").
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        if isinstance(value, bool):
            texts[key] = "true" if value else "false"
        else:
            texts[key] = value if isinstance(value, str) else json.dumps(value)
    return hyperparameters_argv(texts)


def _drop_reserved(unknown: Sequence[str]) -> list[str]:
    left: list[str] = []
    skip_value = False
    for token in unknown:
        if skip_value and not token.startswith("--"):
            skip_value = False
            continue
        skip_value = False
        name = token[2:].split("=", 1)[0] if token.startswith("--") else None
        if name is not None and name.startswith(RESERVED_PREFIXES):
            skip_value = "=" not in token
            continue
        left.append(token)
    return left


def parse_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Arguments as the container passes them: SM_HPS first, explicit `--key value` win."""
    env = os.environ if environ is None else environ
    parser = get_args_parser(environ=env)
    tokens = hps_to_argv(env.get("SM_HPS")) + list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(tokens)
    leftover = _drop_reserved(unknown)
    if leftover:
        parser.error(f"unrecognized arguments: {' '.join(leftover)}")
    return args


# ---------------------------------------------------------------- the run


@dataclass
class Hooks:
    """How a caller in the same process (train-ec2) watches the run."""

    log: Callable[[str], None] | None = None  # every line rank 0 prints (default: stdout)
    on_epoch: Callable[[dict[str, Any], int], None] | None = None  # (record, total epochs)
    stop: StopRequest | None = None  # SIGTERM's flag (cli() installs it); None: never stop


@dataclass
class TrainResult:
    """What main() hands a caller in the same process (train-ec2 reads `metrics`)."""

    model_dir: Path
    metrics: dict[str, Any]
    tarball: Path | None = None  # with --pack


def hyperparameters_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        option: getattr(args, option.replace("-", "_")) for option in HYPERPARAMETER_FIELDS.values()
    }


def main(args: argparse.Namespace, hooks: Hooks | None = None) -> TrainResult:
    """Train, select the best epoch on valid, test it, write the artifact (rank 0)."""
    import torch

    from dogclf.training import distributed

    hooks = hooks or Hooks()
    device = distributed.device_for(args.device, distributed.local_rank_from_env())
    info = distributed.setup(device)
    try:
        return TrainingRun(args, hooks, device, info).run()
    finally:
        distributed.cleanup()
        if device.type == "cuda":
            torch.cuda.empty_cache()


@dataclass
class Prepared:
    """What TrainingRun.prepare() built: the pieces every epoch uses."""

    dataset: DogImages
    loaders: Loaders
    parts: Resumable  # model, optimizer, scheduler, scaler: what a checkpoint saves
    train_module: nn.Module  # what the steps call: the model, its frozen fast path, or DDP
    step: StepConfig
    checkpoint_dir: Path
    progress: Progress  # a fresh run's, or where the checkpoint left off
    feature_cache: dict[str, Any] | None = None  # built/reused, key, images/s; None: not used


def epoch_record(
    epoch: int, train: EpochStats, valid: EpochStats, lr: float, samples_per_rank: list[int]
) -> dict[str, Any]:
    """One epoch as history, metrics.json and the on_epoch hook show it (1-based epoch)."""
    return {
        "epoch": epoch + 1,
        "train_loss": train.loss,
        "train_accuracy": train.accuracy,
        "valid_loss": valid.loss,
        "valid_accuracy": valid.accuracy,
        "lr": lr,
        "seconds": round(train.seconds + valid.seconds, 3),
        "train_images_per_s": round(train.images_per_s, 2),
        "data_share": round(train.data_share, 4),
        "samples_per_rank": samples_per_rank,
    }


def advance(
    progress: Progress,
    record: dict[str, Any],
    model: nn.Module,
    *,
    patience: int,
    epochs: int,
    keep: str = "",
) -> None:
    """Count the epoch `record` describes: best by valid accuracy, then by lower valid loss.

    `keep`: copy only the weights whose names start with it as the best ones (the head of
    a frozen backbone: the rest never changes, and copying it costs more than an epoch on
    cached features)."""
    epoch, best = record["epoch"] - 1, progress.best
    if best is None or (record["valid_accuracy"], -record["valid_loss"]) > (
        best["valid_accuracy"],
        -best["valid_loss"],
    ):
        keys = ("valid_loss", "valid_accuracy", "train_loss", "train_accuracy")
        progress.best = {"epoch": epoch, **{key: record[key] for key in keys}}
        progress.best_weights = {
            k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(keep)
        }
        progress.stale_epochs = 0
    else:
        progress.stale_epochs += 1
    progress.history.append(record)
    progress.next_epoch = epoch + 1
    progress.stopped_early = (
        patience > 0 and progress.stale_epochs >= patience and epoch + 1 < epochs
    )


class TrainingRun:
    """One training run; split into steps so main() reads like the recipe it is."""

    def __init__(self, args: argparse.Namespace, hooks: Hooks, device: Any, info: Any) -> None:
        self.args = args
        self.hooks = hooks
        self.device = device
        self.info = info
        self.seen_bad: set[str] = set()
        self.stopped_at: int | None = None  # 0-based epoch a stop signal cut short
        self.best_written = float("-inf")  # time.monotonic() of the last best-so-far write
        self.started = time.perf_counter()  # metrics.json's timings
        self.precision_choice: PrecisionChoice | None = None  # set by precision()

    # -- output: only rank 0 talks, except for per-rank problems

    def log(self, line: str) -> None:
        if not self.info.is_main:
            return
        if self.hooks.log is not None:
            self.hooks.log(line)
        else:
            print(line, flush=True)

    def warn_any_rank(self, line: str) -> None:
        prefix = f"[rank {self.info.rank}] " if self.info.enabled else ""
        if self.info.is_main and self.hooks.log is not None:
            self.hooks.log(f"warning: {line}")
        else:
            print(f"{prefix}warning: {line}", file=sys.stderr, flush=True)

    def on_bad(self, bad: list[Any]) -> None:
        for item in bad:
            if self.args.bad_images == "fail":
                raise DatasetError(
                    f"unreadable image {item.path_and_reason}",
                    "fix or remove the file, or pass --bad-images skip to skip such files",
                )
            if item.path_and_reason not in self.seen_bad:
                self.seen_bad.add(item.path_and_reason)
                self.warn_any_rank(f"skipping unreadable image {item.path_and_reason}")

    # -- the recipe

    def run(self) -> TrainResult:
        p = self.prepare()
        try:
            for epoch in range(p.progress.next_epoch, self.args.epochs):
                if p.progress.stopped_early:  # also when the checkpoint had stopped
                    break
                if self.stop_requested(0) or not self.train_epoch(p, epoch):
                    self.stopped_at = epoch
                    break
        except Exception as exc:
            self.keep_curves(p, exc)
            raise
        return self.finish(p)

    def keep_curves(self, p: Prepared, exc: Exception) -> None:
        """A run failing after an epoch leaves the best model so far, its metrics.json
        saying why, and the report's curves of every epoch it ran (rank 0)."""
        best, weights = p.progress.best, p.progress.best_weights
        if not self.info.is_main or best is None or weights is None:
            return
        try:
            p.parts.model.load_state_dict(weights)
            metrics = {
                **self.final_metrics(p, best, None),
                "failed": f"{type(exc).__name__}: {exc}",
            }
            self.write_artifact(p.parts.model, p.dataset.labels, metrics, pack=False)
        except Exception as second:  # the first failure is the one to report
            self.log(f"warning: the failed run's best model so far not written: {second}")

    @property
    def stop_signal(self) -> str | None:
        """The signal that stopped this run ("SIGTERM"), None for a run that ended."""
        stop = self.hooks.stop
        return stop.signal_name if stop is not None and self.stopped_at is not None else None

    def stop_requested(self, batch: int) -> bool:
        """A stop signal's answer before `batch`, the same on every rank (stopping.py)."""
        stop = self.hooks.stop
        if stop is None:  # the same on every rank: no collective then
            return False
        return stop.at_batch(batch, self.device, world_size=self.info.world_size)

    def prepare(self) -> Prepared:
        """Everything an epoch needs: data, model, fast frozen path, optimizer, checkpoint.

        bench/train_throughput.py times train_one_epoch on exactly this.
        """
        from dogclf.training import checkpoint as ckpt
        from dogclf.training.engine import StepConfig

        args = self.args
        self.check_settings()
        self.seed()
        dataset, loaders = self.load_data()
        model = self.build_model(dataset.num_classes)
        precision, scaler = self.precision()
        optimizer = self.make_optimizer([p for p in model.parameters() if p.requires_grad])
        parts = ckpt.Resumable(model, optimizer, self.make_scheduler(optimizer), scaler)
        checkpoint_dir = checkpoint_dir_for(args.checkpoint_dir, args.model_dir, os.environ)
        # Before training_module(): the frozen fast path and DDP copy the model's weights.
        resumed = ckpt.restore(
            checkpoint_dir, parts, arch=args.arch, labels=dataset.labels, args=vars(args)
        )
        step = StepConfig(device=self.device, channels_last=True, amp_dtype=precision.amp_dtype)
        train_module = self.training_module(model, step.channels_last, precision.backbone_dtype)
        self.log(
            "run: "
            + " ".join(f"{k}={v}" for k, v in hyperparameters_of(args).items())
            + f" device={self.device} world_size={self.info.world_size}"
            + f" precision={precision.label} ({precision.reason})"
        )
        if resumed is not None:
            where = checkpoint_dir / ckpt.CHECKPOINT_FILE
            self.log(f"resuming from {where}: epoch {resumed.next_epoch} done")
        progress = resumed or ckpt.Progress()
        p = Prepared(dataset, loaders, parts, train_module, step, checkpoint_dir, progress)
        if args.freeze_backbone and args.feature_cache:
            self.use_feature_cache(p, precision.label)
        return p

    def use_feature_cache(self, p: Prepared, precision: str) -> None:
        """Swap the image loaders and the frozen model for cached features and the head
        (dogclf/training/cached.py); p.parts.model stays the whole network."""
        import torch

        from dogclf.training import cached
        from dogclf.training import feature_cache as fc
        from dogclf.training.engine import StepConfig
        from dogclf.training.frozen import FrozenBackbone, head_attribute

        args, model, frozen, step = self.args, p.parts.model, p.train_module, p.step
        assert isinstance(frozen, FrozenBackbone)  # training_module() with freeze_backbone
        head = head_attribute(args.arch) + "."

        def key_parts() -> dict[str, Any]:
            backbone = {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
            return {
                "arch": args.arch,
                "weights": fc.weights_identity(backbone),
                "image_size": args.image_size,
                "views": args.augment_views,
                "precision": precision,
            }

        def features(images: torch.Tensor) -> torch.Tensor:
            x, _ = step.to_device(images, torch.empty(0, dtype=torch.long))
            with step.autocast():
                return frozen.features(x)

        request = cached.CacheRequest(
            root=feature_cache_root(args),
            shared=args.feature_cache_from,
            key_parts=key_parts,
            features=features,
            image_size=args.image_size,
            views=args.augment_views,
            batch_size=args.batch_size,
            num_workers=self.num_workers(),
            seed=args.seed,
            on_bad=self.on_bad,
            log=self.log,
            log_every=args.print_freq * args.batch_size,
            pin_memory=self.device.type == "cuda",
        )
        splits, info = cached.obtain(request, p.dataset, self.info)
        self.log_feature_cache(info, splits)
        p.loaders = cached.feature_loaders(
            splits,
            batch_size=args.batch_size,
            rank=self.info.rank,
            world_size=self.info.world_size,
            seed=args.seed,
        )
        p.train_module = frozen.head  # DDP-wrapped when distributed
        p.step = StepConfig(device=self.device, amp_dtype=step.amp_dtype)
        p.feature_cache = info.as_dict()

    def log_feature_cache(self, info: Any, splits: dict[str, Any]) -> None:
        sizes = ", ".join(f"{k} {len(s)}" for k, s in splits.items())
        ranks = self.info.world_size
        how = (
            f"built in {info.seconds:.1f} s ({info.images_per_s:.1f} images/s, "
            f"{ranks} rank{'s' if ranks > 1 else ''})"
            if info.status == "built"
            else f"reused from the {info.source} (loaded in {info.seconds:.1f} s)"
        )
        self.log(
            f"feature cache: {how}; key {info.key[:12]}, {sizes} images x "
            f"{info.views} train view(s), {info.dtype}, {info.bytes / 1e6:.1f} MB in {info.path}"
        )

    def train_epoch(self, p: Prepared, epoch: int) -> bool:
        """Train, evaluate on valid, keep the best weights, checkpoint (rank 0).

        False when a stop signal cut the epoch short: its partial work is dropped, so the
        checkpoint stays the last completed epoch's (what a restart resumes exactly)."""
        from dogclf.training import checkpoint as ckpt
        from dogclf.training import distributed
        from dogclf.training.engine import evaluate, train_one_epoch
        from dogclf.training.frozen import head_attribute

        args, parts, progress = self.args, p.parts, p.progress
        p.loaders.train_sampler.set_epoch(epoch)
        lr = parts.optimizer.param_groups[0]["lr"]
        train = train_one_epoch(
            p.train_module,
            self.criterion,
            parts.optimizer,
            p.loaders.train,
            p.step,
            scaler=parts.scaler,
            on_bad=self.on_bad,
            log=self.log,
            log_every=args.print_freq,
            prefix=f"epoch {epoch + 1}/{args.epochs} step ",
            should_stop=self.stop_requested,
        )
        if train.stopped:
            return False
        parts.scheduler.step()
        samples_per_rank = distributed.all_gather_ints(train.local_samples)
        valid = evaluate(p.train_module, p.loaders.valid, p.step, on_bad=self.on_bad)
        record = epoch_record(epoch, train, valid, lr, samples_per_rank)
        keep = head_attribute(args.arch) + "." if p.feature_cache is not None else ""
        advance(
            progress, record, parts.model, patience=args.patience, epochs=args.epochs, keep=keep
        )
        self.log_epoch(record, args.epochs, best_epoch=progress.best_epoch)
        if self.info.is_main:
            labels = p.dataset.labels
            ckpt.save(
                p.checkpoint_dir,
                parts,
                progress,
                arch=args.arch,
                labels=labels,
                args=vars(args),
                only=keep,
            )
            self.write_best_so_far(p, epoch)
        distributed.barrier()
        if self.hooks.on_epoch is not None and self.info.is_main:
            self.hooks.on_epoch(record, args.epochs)
        if progress.stopped_early:
            self.log(
                f"early stop: no better valid accuracy for {progress.stale_epochs} epochs "
                f"(best epoch {progress.best_epoch})"
            )
        return True

    def finish(self, p: Prepared) -> TrainResult:
        """The best epoch's weights on test, the metric lines, the artifact (rank 0)."""
        from dogclf.training import distributed
        from dogclf.training.engine import evaluate

        best, weights = p.progress.best, p.progress.best_weights
        self.log_stop(p)
        assert best is not None and weights is not None  # at least one epoch ran
        state = p.parts.model.state_dict()
        state.update(weights)  # all of them, or only the head's (advance's `keep`)
        p.parts.model.load_state_dict(state)
        test = evaluate(
            p.train_module,
            p.loaders.test,
            p.step,
            on_bad=self.on_bad,
            num_classes=p.dataset.num_classes,
        )
        for name, value in (
            ("valid_loss", best["valid_loss"]),
            ("valid_accuracy", best["valid_accuracy"]),
            ("test_loss", test.loss),
            ("test_accuracy", test.accuracy),
        ):
            self.log(format_metric(name, value))
        self.log(
            f"best epoch {p.progress.best_epoch}: valid accuracy {best['valid_accuracy']:.4f}, "
            f"test accuracy {test.accuracy:.4f}"
        )
        metrics = self.final_metrics(p, best, test)
        tarball = None
        if self.info.is_main:
            int8_model, metrics["int8"] = self.calibrate_int8(p)
            tarball = self.write_artifact(
                p.parts.model, p.dataset.labels, metrics, int8_model=int8_model
            )
        distributed.barrier()
        return TrainResult(Path(self.args.model_dir), metrics, tarball)

    def calibrate_int8(self, p: Prepared) -> tuple[Any, dict[str, Any]]:
        """The tested network in int8 and what metrics.json says of it. No engine, or a
        failure: int8 unsupported, one log line, the run goes on."""
        from dogclf.model import quantize

        info: dict[str, Any] = {"usable": False, "min_agreement": self.args.int8_min_agreement}
        if self.stop_signal is not None:  # a stopped job has seconds left: write, no calibration
            return None, {**info, "reason": f"stopped by {self.stop_signal}"}
        if self.args.int8_min_agreement > 100:  # no agreement reaches it: skip the work
            self.log("int8: off (--int8-min-agreement above 100)")
            return None, {**info, "reason": "off: --int8-min-agreement above 100"}
        engine = quantize.int8_engine()
        if engine is None:
            self.log("int8: unsupported here (no x86/fbgemm quantized engine)")
            return None, {**info, "reason": "no x86/fbgemm quantized engine"}
        try:
            model, measured = self.quantize_and_compare(p, engine)
        except Exception as exc:  # torch's quantization raises many kinds
            self.log(f"int8: unsupported, calibration failed: {type(exc).__name__}: {exc}")
            return None, {**info, "reason": f"calibration failed: {type(exc).__name__}"}
        info.update(measured, engine=engine)
        info["usable"] = info["agreement"] >= self.args.int8_min_agreement
        self.log(
            f"int8: top-1 agreement with fp32 {info['agreement']:.2f}% of "
            f"{info['compared']} test images ({'usable' if info['usable'] else 'not usable'}, "
            f"threshold {self.args.int8_min_agreement}%); calibrated on "
            f"{info['calibration_images']} train images in {info['calibration_seconds']} s"
        )
        return (model if info["usable"] else None), info

    def quantize_and_compare(self, p: Prepared, engine: str) -> tuple[Any, dict[str, Any]]:
        import copy
        import time

        import torch

        from dogclf.model import quantize
        from dogclf.model.artifact import unwrap

        size, samples = self.args.image_size, p.dataset.samples
        reference = copy.deepcopy(unwrap(p.parts.model)).cpu().float().eval()
        start = time.perf_counter()
        calibration = eval_batches(samples["train"], size, quantize.CALIBRATION_IMAGES)
        example = torch.zeros(1, 3, size, size)
        within = quantize.within(calibration, quantize.CALIBRATION_BUDGET_S)
        model, images = quantize.quantize_int8(reference, within, example, engine)
        seconds = time.perf_counter() - start
        test = eval_batches(samples["test"], size, quantize.AGREEMENT_IMAGES)
        same, total = quantize.agreement(
            reference, model, quantize.within(test, quantize.AGREEMENT_BUDGET_S)
        )
        return model, {
            "agreement": round(100.0 * same / max(total, 1), 2),
            "agreeing": same,
            "compared": total,
            "calibration_images": images,
            "calibration_seconds": round(seconds, 1),
            "file": quantize.INT8_FILE,
        }

    def write_best_so_far(self, p: Prepared, epoch: int) -> None:
        """After an epoch that improved, the model dir holds its weights (test not run yet).

        SageMaker uploads the model dir of a stopped job, but the stock image's launcher does
        not pass SIGTERM on to the program, so a stop must find the best model already there.
        """
        import time

        best = p.progress.best
        last = epoch + 1 == self.args.epochs or p.progress.stopped_early
        if best is None or best["epoch"] != epoch or last:  # finish() writes the last one
            return
        # Epochs on cached features take a fraction of a second, writing the model dir
        # longer: then at most one write per BEST_SO_FAR_EVERY_S (a stop finds a model at
        # most that much older than the best).
        now = time.monotonic()
        if p.feature_cache is not None and now - self.best_written < BEST_SO_FAR_EVERY_S:
            return
        self.best_written = now
        metrics = self.final_metrics(p, best, None)
        self.write_artifact(p.parts.model, p.dataset.labels, metrics, pack=False)

    def log_stop(self, p: Prepared) -> None:
        """Say how a stop signal ended the run; refuse when there is nothing to write."""
        if self.stopped_at is None:
            return
        where = f"stopped by {self.stop_signal} in epoch {self.stopped_at + 1}/{self.args.epochs}"
        if p.progress.best is None:
            raise DogclfError(
                f"{where}, before any epoch completed: no model to write",
                "give the job time for at least one epoch",
            )
        self.log(
            f"{where}: that epoch's partial work dropped; writing the best model so far "
            f"(epoch {p.progress.best_epoch}); the checkpoint of epoch {p.progress.next_epoch} "
            f"stays in {p.checkpoint_dir} for a restart"
        )

    # -- pieces

    def check_settings(self) -> None:
        """Refuse settings no epoch can run with."""
        from dogclf.model.network import ARCHS

        args = self.args
        if args.arch not in ARCHS:
            raise DogclfError(f"unknown --arch {args.arch!r}", f"use one of {', '.join(ARCHS)}")
        if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
            raise DogclfError(
                f"invalid settings: epochs={args.epochs}, batch-size={args.batch_size}, lr={args.lr}",
                "epochs and batch size must be >= 1 and lr > 0",
            )
        if args.augment_views < 0:
            raise DogclfError(
                f"invalid --augment-views {args.augment_views}",
                "use 0 (the eval transform only) or the number of random views per image",
            )

    def seed(self) -> None:
        import torch

        random.seed(self.args.seed)
        torch.manual_seed(self.args.seed)  # the same on every rank: identical initial weights
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def load_data(self) -> tuple[DogImages, Loaders]:
        from dogclf.training import data as data_mod

        args, info = self.args, self.info
        splits = {"train": args.train_dir, "valid": args.valid_dir, "test": args.test_dir}
        dataset = data_mod.scan_dataset(data_mod.split_dirs(args.data_dir, splits))
        num_workers = self.num_workers()
        loaders = data_mod.build_loaders(
            dataset,
            image_size=args.image_size,
            batch_size=args.batch_size,
            num_workers=num_workers,
            rank=info.rank,
            world_size=info.world_size,
            seed=args.seed,
            pin_memory=self.device.type == "cuda",
        )
        counts = {split: len(s) for split, s in dataset.samples.items()}
        self.log(
            f"data: {dataset.num_classes} classes; train {counts['train']}, "
            f"valid {counts['valid']}, test {counts['test']} images; "
            f"{num_workers} loader workers per process"
        )
        return dataset, loaders

    def num_workers(self) -> int:
        from dogclf.training import data as data_mod

        if self.args.num_workers is not None:
            return int(self.args.num_workers)
        return data_mod.default_num_workers(self.info.local_world_size)

    def precision(self) -> tuple[PrecisionChoice, torch.amp.GradScaler | None]:
        """engine.choose_precision on this device, and the GradScaler fp16 needs."""
        import torch

        from dogclf.model.network import cpu_has_native_bf16
        from dogclf.training.engine import choose_precision

        cuda = self.device.type == "cuda"
        choice = choose_precision(
            self.device.type,
            torch.cuda.get_device_capability(self.device) if cuda else None,
            amp=self.args.amp,
            freeze_backbone=self.args.freeze_backbone,
            cpu_native_bf16=not cuda and cpu_has_native_bf16(),
        )
        scaler = torch.amp.GradScaler(self.device.type) if choice.grad_scaler else None
        self.precision_choice = choice
        return choice, scaler

    def final_metrics(
        self, p: Prepared, best: dict[str, Any], test: EpochStats | None
    ) -> dict[str, Any]:
        """metrics.json: the best epoch's numbers, its test result, how the run went.

        `test` None: written mid-run (write_best_so_far); `complete` then says False."""
        history = p.progress.history
        return {
            "train": {"loss": best["train_loss"], "accuracy": best["train_accuracy"]},
            "valid": {"loss": best["valid_loss"], "accuracy": best["valid_accuracy"]},
            "test": None if test is None else {"loss": test.loss, "accuracy": test.accuracy},
            "complete": test is not None,
            "best_epoch": best["epoch"] + 1,
            "epochs_run": len(history),
            "stopped_early": p.progress.stopped_early,
            # A stop signal (SageMaker's StopTrainingJob, tuning early stopping, Hyperband):
            # its name and the 1-based epoch it cut short; None both for a run that ended.
            "stopped_by_signal": self.stop_signal,
            "stopped_at_epoch": self.stopped_at + 1 if self.stopped_at is not None else None,
            "hyperparameters": hyperparameters_of(self.args),
            "world_size": self.info.world_size,
            "samples": {split: len(s) for split, s in p.dataset.samples.items()},
            "samples_per_rank": history[-1]["samples_per_rank"],
            "feature_cache": p.feature_cache,
            "history": history,
            # What the training report shows beyond the above (dogclf/training/report.py).
            "test_confusion": None if test is None else test.confusion,
            "training_precision": {
                "label": self.precision_choice.label if self.precision_choice else None,
                "reason": self.precision_choice.reason if self.precision_choice else None,
            },
            "timings": {
                "total_seconds": round(time.perf_counter() - self.started, 3),
                "epochs_seconds": round(sum(r["seconds"] for r in history), 3),
                "test_seconds": None if test is None else round(test.seconds, 3),
            },
        }

    # -- pieces

    @property
    def criterion(self) -> Any:
        from torch import nn

        return nn.CrossEntropyLoss(label_smoothing=self.args.label_smoothing)

    def build_model(self, num_classes: int) -> Any:
        from dogclf.model.network import PretrainedWeightsError, build_model
        from dogclf.training import distributed

        def build() -> Any:
            try:
                return build_model(
                    self.args.arch,
                    num_classes,
                    pretrained=self.args.pretrained,
                    freeze_backbone=self.args.freeze_backbone,
                )
            except PretrainedWeightsError as exc:
                raise DogclfError(
                    str(exc), "on a host without network, train with --pretrained false"
                ) from None

        # One download per host: local rank 0 fetches the weights, the others then read
        # them from the torch hub cache.
        local_main = self.info.local_rank == 0
        if not local_main:
            distributed.barrier()
        model = build()
        if local_main:
            distributed.barrier()
        return model.to(self.device)

    def training_module(self, model: Any, channels_last: bool, backbone_dtype: Any = None) -> Any:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        from dogclf.training.frozen import frozen_backbone

        ids = [self.device.index] if self.device.type == "cuda" else None
        if self.args.freeze_backbone:
            module = frozen_backbone(
                model,
                self.args.arch,
                device=self.device,
                channels_last=channels_last,
                compile=self.args.compile,
                autocast_dtype=backbone_dtype,
                image_size=self.args.image_size,
            )
            if self.info.enabled:  # only the head has gradients to average
                module.head = DistributedDataParallel(module.head, device_ids=ids)
            return module
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.info.enabled:
            return DistributedDataParallel(model, device_ids=ids)
        return model

    def make_optimizer(self, params: list[Any]) -> Any:
        import torch

        a = self.args
        if a.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay, nesterov=True
            )
        cls = torch.optim.AdamW if a.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=a.lr, weight_decay=a.weight_decay)

    def make_scheduler(self, optimizer: Any) -> Any:
        """Per-epoch LR factor in closed form (LambdaLR): a resumed run with a different
        --epochs follows the schedule for its own length, not the checkpoint's."""
        import math

        import torch

        epochs, kind = self.args.epochs, self.args.lr_scheduler

        def factor(epoch: int) -> float:
            if kind == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / epochs))
            if kind == "step":
                return 0.1 ** (epoch // max(1, epochs // 3))
            return 1.0

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def log_epoch(self, record: dict[str, Any], epochs: int, best_epoch: int) -> None:
        self.log(
            f"epoch {record['epoch']}/{epochs} done in {record['seconds']:.1f} s "
            f"({record['train_images_per_s']:.1f} train img/s, loader wait "
            f"{record['data_share'] * 100:.0f}%), lr {record['lr']:.3g}, best epoch {best_epoch}"
        )
        for name in ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy"):
            self.log(format_metric(name, record[name]))

    def write_artifact(
        self,
        model: Any,
        labels: list[str],
        metrics: dict[str, Any],
        *,
        pack: bool = True,
        int8_model: Any = None,
    ) -> Path | None:
        from dogclf.model.artifact import pack_model_dir, write_model_dir

        model_dir = write_model_dir(
            Path(self.args.model_dir),
            model=model,
            arch=self.args.arch,
            num_classes=len(labels),
            image_size=self.args.image_size,
            labels=labels,
            metrics=metrics,
            int8_model=int8_model,
        )
        self.log(f"model written to {model_dir}" + ("" if pack else " (best so far)"))
        from dogclf.training.report import write_report_safely

        write_report_safely(model_dir, metrics, labels, self.log)  # inside model.tar.gz too
        if self.args.pack is None or not pack:
            return None
        tarball = pack_model_dir(model_dir, Path(self.args.pack))
        self.log(f"packed {tarball}")
        return tarball


def eval_batches(samples: list[Any], image_size: int, limit: int) -> Iterator[Any]:
    """At most `limit` images spread over `samples` (all classes), eval transform, in
    batches of 32; unreadable ones left out (training already reported them). Read here,
    not through the training loaders: calibration is no part of an epoch's data."""
    import torch

    from dogclf.training import data as data_mod

    transform, draft = data_mod.eval_transform(image_size), data_mod.resize_size(image_size)
    batch: list[Any] = []
    for path, _ in samples[:: max(1, len(samples) // limit)][:limit]:
        try:
            batch.append(transform(data_mod.load_image_file(path, draft_size=draft)))
        except (data_mod.ImageDecodeError, OSError):
            continue
        if len(batch) == 32:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def _write_failure(message: str) -> None:
    """SageMaker shows /opt/ml/output/failure as the job's FailureReason."""
    output = os.environ.get("SM_OUTPUT_DIR")
    if output and Path(output).is_dir():
        with contextlib.suppress(OSError):
            (Path(output) / "failure").write_text(message[:1024], encoding="utf-8")


def cli(argv: Sequence[str] | None = None) -> int:
    """The program: SIGTERM finishes the run with the best model so far, exit 0."""
    args = parse_args(argv)  # before torch: --help and bad arguments answer at once
    from dogclf.training.stopping import StopRequest, stop_on

    try:
        with stop_on(StopRequest()) as stop:
            main(args, Hooks(stop=stop))
    except DogclfError as exc:
        print(f"Error: {exc.message}", file=sys.stderr, flush=True)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr, flush=True)
        _write_failure(exc.message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
