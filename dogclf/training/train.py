"""The training program: SageMaker entry point, `train-ec2`, `train-sagemaker --local`.

    python -m dogclf.training.train --data-dir DATA --epochs 5 --arch resnet18
    torchrun --nproc_per_node 2 -m dogclf.training.train --data-dir DATA ...

Inside a SageMaker training container the defaults come from the container's environment
(SM_CHANNEL_TRAIN/VALID/TEST, SM_MODEL_DIR, SM_HPS, ...); anywhere else they are local
folders, never a KeyError. Hyperparameters arrive as `--key value` arguments and/or as
JSON in SM_HPS; explicit arguments win.

One epoch: train (shuffled, augmented), evaluate on valid, checkpoint, early-stop check.
At the end the best epoch's weights (by valid accuracy) are evaluated on test and written
as the model artifact. Metric lines (`valid_accuracy=0.812300;`) are what SageMaker's
MetricDefinitions parse; see dogclf/model/metrics.py.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dogclf.errors import DatasetError, DogclfError
from dogclf.model.hyperparameters import HYPERPARAMETER_FIELDS
from dogclf.model.metrics import format_metric

if TYPE_CHECKING:  # torch stays a lazy import: the parser works without it
    import torch
    from torch import nn

    from dogclf.training.data import DogImages, Loaders
    from dogclf.training.engine import StepConfig

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


def get_args_parser(
    add_help: bool = True, environ: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        description="dogclf training core (SageMaker entry point, train-ec2, --local)",
        add_help=add_help,
        allow_abbrev=False,  # `--epoch` must not silently mean `--epochs`
    )

    group: Any = parser

    def add(*names: str, **kwargs: Any) -> None:
        # `--batch-size` also answers to `--batch_size` (how people write SageMaker keys).
        aliases = ["--" + n[2:].replace("-", "_") for n in names if "-" in n[2:]]
        group.add_argument(*names, *aliases, **kwargs)

    group = parser.add_argument_group("data")
    add(
        "--data-dir",
        type=Path,
        default=_env_path(env, "SM_CHANNEL_TRAINING"),
        help="folder with train/ valid/ test/ (dogImages layout)",
    )
    for split in ("train", "valid", "test"):
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
        "/opt/ml/checkpoints on SageMaker, else MODEL_DIR/../checkpoints)",
    )
    add("--pack", type=Path, default=None, help="also write model.tar.gz to this path")
    add(
        "--bad-images",
        choices=("skip", "fail"),
        default="skip",
        help="an unreadable image file: report its path and skip it, or stop the run",
    )

    group = parser.add_argument_group("model")
    add(
        "--arch",
        default="resnet50",
        help="torchvision classifier (resnet18/34/50/101, efficientnet_b0/b1, "
        "mobilenet_v3_small/large, convnext_tiny) or tiny_cnn",
    )
    add(
        "--pretrained",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="start from ImageNet weights (needs network or a filled torch hub cache)",
    )
    add(
        "--freeze-backbone",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="train only the new head",
    )

    group = parser.add_argument_group("optimization")
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

    group = parser.add_argument_group("runtime")
    add(
        "--num-workers",
        type=int,
        default=None,
        help="data loader workers per process (default: the host's CPUs / local processes)",
    )
    add(
        "--amp",
        type=parse_bool,
        nargs="?",
        const=True,
        default=True,
        help="mixed precision: on GPU bf16 where supported, else fp16; on a CPU with "
        "native bf16, the frozen backbone in bf16",
    )
    add("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add(
        "--compile",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="torch.compile the frozen backbone (one-off compile, then faster steps)",
    )
    add("--seed", type=int, default=0)
    add("--print-freq", type=int, default=50, help="log the loss every N steps (0 = off)")
    return parser


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
    argv: list[str] = []
    for key, value in hps.items():
        if isinstance(value, str):
            # SageMaker may hand over JSON-encoded strings ("\"resnet50\"", "true").
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        if isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = value if isinstance(value, str) else json.dumps(value)
        argv += [f"--{key}", text]
    return argv


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


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    tarball: Path | None = None
    resumed_from_epoch: int | None = None  # 1-based epoch the checkpoint had completed
    extras: dict[str, Any] = field(default_factory=dict)


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
    model: nn.Module  # the network whose state_dict is saved
    train_module: nn.Module  # what the steps call: the model, its frozen fast path, or DDP
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None  # fp16 on GPU only
    step: StepConfig
    checkpoint_dir: Path
    state: dict[str, Any] | None  # the checkpoint to resume from


class TrainingRun:
    """One training run; split into steps so main() reads like the recipe it is."""

    def __init__(self, args: argparse.Namespace, hooks: Hooks, device: Any, info: Any) -> None:
        self.args = args
        self.hooks = hooks
        self.device = device
        self.info = info
        self.seen_bad: set[str] = set()

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

    def prepare(self) -> Prepared:
        """Everything an epoch needs: data, model, fast frozen path, optimizer, checkpoint.

        bench/train_throughput.py times train_one_epoch on exactly this.
        """
        import torch

        from dogclf.model.network import ARCHS
        from dogclf.training import checkpoint as ckpt
        from dogclf.training import data as data_mod
        from dogclf.training.engine import StepConfig
        from dogclf.training.frozen import backbone_autocast_dtype

        args, info, device = self.args, self.info, self.device
        if args.arch not in ARCHS:
            raise DogclfError(f"unknown --arch {args.arch!r}", f"use one of {', '.join(ARCHS)}")
        if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
            raise DogclfError(
                f"invalid settings: epochs={args.epochs}, batch-size={args.batch_size}, lr={args.lr}",
                "epochs and batch size must be >= 1 and lr > 0",
            )
        random.seed(args.seed)
        torch.manual_seed(args.seed)  # the same on every rank: identical initial weights
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        dirs = data_mod.split_dirs(
            args.data_dir, {"train": args.train_dir, "valid": args.valid_dir, "test": args.test_dir}
        )
        dataset = data_mod.scan_dataset(dirs)
        num_workers = (
            args.num_workers
            if args.num_workers is not None
            else data_mod.default_num_workers(info.local_world_size)
        )
        loaders = data_mod.build_loaders(
            dataset,
            image_size=args.image_size,
            batch_size=args.batch_size,
            num_workers=num_workers,
            rank=info.rank,
            world_size=info.world_size,
            seed=args.seed,
            pin_memory=device.type == "cuda",
        )
        counts = {split: len(s) for split, s in dataset.samples.items()}
        self.log(
            f"data: {dataset.num_classes} classes; train {counts['train']}, "
            f"valid {counts['valid']}, test {counts['test']} images; "
            f"{num_workers} loader workers per process"
        )

        model = self.build_model(dataset.num_classes)
        checkpoint_dir = args.checkpoint_dir or (Path(args.model_dir).parent / "checkpoints")
        state = ckpt.load_checkpoint(checkpoint_dir)
        if state is not None:
            ckpt.check_compatible(state, arch=args.arch, labels=dataset.labels)
            model.load_state_dict(state["model"])

        amp_dtype = None
        scaler = None
        if device.type == "cuda" and args.amp:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if amp_dtype is torch.float16:
                scaler = torch.amp.GradScaler("cuda")
        # On a CPU, mixed precision only for the frozen backbone (the head stays fp32).
        backbone_dtype = backbone_autocast_dtype(device, args.amp) if args.freeze_backbone else None
        step = StepConfig(device=device, channels_last=True, amp_dtype=amp_dtype)
        train_module = self.training_module(model, step.channels_last, backbone_dtype)
        precision = "fp32"
        if amp_dtype is not None:
            precision = f"{str(amp_dtype).removeprefix('torch.')}-autocast"
        elif backbone_dtype is not None:
            precision = f"{str(backbone_dtype).removeprefix('torch.')}-backbone"
        self.log(
            "run: "
            + " ".join(f"{k}={v}" for k, v in hyperparameters_of(args).items())
            + f" device={device} world_size={info.world_size} precision={precision}"
        )

        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = self.make_optimizer(params)
        scheduler = self.make_scheduler(optimizer)
        return Prepared(
            dataset=dataset,
            loaders=loaders,
            model=model,
            train_module=train_module,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            step=step,
            checkpoint_dir=checkpoint_dir,
            state=state,
        )

    def run(self) -> TrainResult:
        from dogclf.training import checkpoint as ckpt
        from dogclf.training import distributed
        from dogclf.training.engine import evaluate, train_one_epoch

        args, info = self.args, self.info
        p = self.prepare()
        model, train_module, step, loaders = p.model, p.train_module, p.step, p.loaders
        optimizer, scheduler, scaler, state = p.optimizer, p.scheduler, p.scaler, p.state
        labels, checkpoint_dir = p.dataset.labels, p.checkpoint_dir
        counts = {split: len(s) for split, s in p.dataset.samples.items()}

        start_epoch = 0
        best: dict[str, Any] | None = None
        best_state: dict[str, Any] | None = None
        history: list[dict[str, Any]] = []
        stale = 0
        stopped_early = False
        resumed_from = None
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_epoch = int(state["epoch"]) + 1
            best = state["best"]
            best_state = (
                state["best_model"] if state.get("best_model") is not None else state["model"]
            )
            history = list(state["history"])
            stale = int(state["stale_epochs"])
            stopped_early = bool(state.get("stopped_early"))
            resumed_from = start_epoch
            self.log(
                f"resuming from {checkpoint_dir / ckpt.CHECKPOINT_FILE}: epoch {start_epoch} done"
            )

        samples_per_rank: list[int] = []
        for epoch in range(start_epoch, args.epochs):
            if stopped_early:
                break
            loaders.train_sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            train_stats = train_one_epoch(
                train_module,
                self.criterion,
                optimizer,
                loaders.train,
                step,
                scaler=scaler,
                on_bad=self.on_bad,
                log=self.log,
                log_every=args.print_freq,
                prefix=f"epoch {epoch + 1}/{args.epochs} step ",
            )
            scheduler.step()
            samples_per_rank = distributed.all_gather_ints(train_stats.local_samples)
            valid_stats = evaluate(train_module, loaders.valid, step, on_bad=self.on_bad)
            improved = best is None or (
                valid_stats.accuracy,
                -valid_stats.loss,
            ) > (best["valid_accuracy"], -best["valid_loss"])
            if improved:
                best = {
                    "epoch": epoch,
                    "valid_loss": valid_stats.loss,
                    "valid_accuracy": valid_stats.accuracy,
                    "train_loss": train_stats.loss,
                    "train_accuracy": train_stats.accuracy,
                }
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                stale = 0
            else:
                stale += 1
            record = {
                "epoch": epoch + 1,
                "train_loss": train_stats.loss,
                "train_accuracy": train_stats.accuracy,
                "valid_loss": valid_stats.loss,
                "valid_accuracy": valid_stats.accuracy,
                "lr": lr,
                "seconds": round(train_stats.seconds + valid_stats.seconds, 3),
                "train_images_per_s": round(train_stats.images_per_s, 2),
                "data_share": round(train_stats.data_share, 4),
                "samples_per_rank": samples_per_rank,
            }
            history.append(record)
            stopped_early = args.patience > 0 and stale >= args.patience and epoch + 1 < args.epochs
            self.log_epoch(record, args.epochs, best_epoch=best["epoch"] + 1 if best else 0)
            if info.is_main:
                ckpt.save_checkpoint(
                    checkpoint_dir,
                    {
                        "arch": args.arch,
                        "labels": labels,
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "best": best,
                        # The best weights only when they are not this epoch's (saves space).
                        "best_model": None if improved else best_state,
                        "history": history,
                        "stale_epochs": stale,
                        "stopped_early": stopped_early,
                        "args": {k: str(v) for k, v in vars(args).items()},
                    },
                )
            distributed.barrier()
            if self.hooks.on_epoch is not None and info.is_main:
                self.hooks.on_epoch(record, args.epochs)
            if stopped_early:
                self.log(
                    f"early stop: no better valid accuracy for {stale} epochs "
                    f"(best epoch {best['epoch'] + 1 if best else '?'})"
                )

        assert best is not None and best_state is not None  # at least one epoch ran
        model.load_state_dict(best_state)
        test_stats = evaluate(train_module, loaders.test, step, on_bad=self.on_bad)
        for name, value in (
            ("valid_loss", best["valid_loss"]),
            ("valid_accuracy", best["valid_accuracy"]),
            ("test_loss", test_stats.loss),
            ("test_accuracy", test_stats.accuracy),
        ):
            self.log(format_metric(name, value))
        self.log(
            f"best epoch {best['epoch'] + 1}: valid accuracy {best['valid_accuracy']:.4f}, "
            f"test accuracy {test_stats.accuracy:.4f}"
        )
        metrics: dict[str, Any] = {
            "train": {"loss": best["train_loss"], "accuracy": best["train_accuracy"]},
            "valid": {"loss": best["valid_loss"], "accuracy": best["valid_accuracy"]},
            "test": {"loss": test_stats.loss, "accuracy": test_stats.accuracy},
            "best_epoch": best["epoch"] + 1,
            "epochs_run": len(history),
            "stopped_early": stopped_early,
            "hyperparameters": hyperparameters_of(args),
            "world_size": info.world_size,
            "samples": counts,
            "samples_per_rank": history[-1]["samples_per_rank"] if history else samples_per_rank,
            "history": history,
        }
        tarball = None
        if info.is_main:
            tarball = self.write_artifact(model, labels, metrics)
        distributed.barrier()
        return TrainResult(Path(args.model_dir), metrics, tarball, resumed_from)

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

    def write_artifact(self, model: Any, labels: list[str], metrics: dict[str, Any]) -> Path | None:
        from dogclf.model.artifact import pack_model_dir, write_model_dir

        model_dir = write_model_dir(
            Path(self.args.model_dir),
            model=model,
            arch=self.args.arch,
            num_classes=len(labels),
            image_size=self.args.image_size,
            labels=labels,
            metrics=metrics,
        )
        self.log(f"model written to {model_dir}")
        if self.args.pack is None:
            return None
        tarball = pack_model_dir(model_dir, Path(self.args.pack))
        self.log(f"packed {tarball}")
        return tarball


def _write_failure(message: str) -> None:
    """SageMaker shows /opt/ml/output/failure as the job's FailureReason."""
    output = os.environ.get("SM_OUTPUT_DIR")
    if output and Path(output).is_dir():
        with contextlib.suppress(OSError):
            (Path(output) / "failure").write_text(message[:1024], encoding="utf-8")


def cli(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        main(args)
    except DogclfError as exc:
        print(f"Error: {exc.message}", file=sys.stderr, flush=True)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr, flush=True)
        _write_failure(exc.message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
