"""Training speed of the training core against a reference-style loop, same run, same data.

In one run, on generated 300-700 px JPEGs (the sizes of dogImages photos), resnet50 with a
frozen backbone (random weights: ImageNet weights cannot be fetched here, and the speed is
the same):

1. per training step, without the feature cache (issue 3's figure, target >= 2x):
  core      what `main(args)` builds for the default `[training]` config with
            `feature_cache = false` (TrainingRun.prepare: data loaders, the frozen-backbone
            fast path, AdamW; AMP on GPU, bf16 backbone on a CPU with native bf16), stepped
            by engine.train_one_epoch
  baseline  a loop written like the reference project: ImageFolder + PIL Resize((224, 224)) +
            ToTensor + Normalize, DataLoader(shuffle=True) with default settings (no workers),
            resnet50 with requires_grad=False on the backbone and fc 2048-128-133, Adam,
            model.train(), fp32, running loss and accuracy per step
  Each side starts one epoch and runs --warmup batches; then each round times the next
  --batches batches of each side, alternating which side goes first; the ratio is the
  median of the per-round ratios. "loader share" is the time spent waiting for a batch.
2. a whole --epochs run (issue 14, target >= 10x): the baseline's loop for every epoch (train,
  then valid, saving the model when valid loss improved, as the reference did) against
  `main(args)` with the default config (the feature cache on: one backbone pass per image,
  then epochs on the features; int8 calibration off, the reference has none), then
  `main(args)` again on the same cache (reused). Also: the cache pass's images/s against the
  reference's (target >= 2x).
3. accuracy with and without the cache on generated data (resnet18 at 64 px, random weights,
  its own generated set): `main(args)` with feature_cache false, with the cache (augment_views
  0, the default) and with --views random views; target: with the cache within 2 points.

Run: python bench/train_throughput.py [--rounds 5] [--batches 2] [--batch-size 64]
     [--epochs 10] [--amp false] [--parts 1,2,3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from machine import load, torch_line

TARGET_RATIO = 2.0  # training step, without the cache
TARGET_RUN_RATIO = 10.0  # a whole --epochs run, the cache on
TARGET_CACHE_RATE = 2.0  # the cache pass's images/s against the reference's
TARGET_ACCURACY_POINTS = 2.0
CLASSES = 16  # the breeds make_dataset can draw; the baseline's head still has 133 outputs


@dataclass
class Round:
    images_per_s: float
    loader_share: float


def make_data(root: Path, train_images: int) -> Path:
    """A dogImages tree whose train split holds at least `train_images` photos."""
    from dogclf.training.synthetic import SPLIT_SHARE, make_dataset

    needed = -(-train_images // CLASSES)  # train images per class, rounded up
    per_class = needed  # make_dataset splits per_class 70/15/15
    while per_class - 2 * max(1, round(per_class * SPLIT_SHARE["valid"])) < needed:
        per_class += 1
    return make_dataset(
        root / "data", classes=CLASSES, per_class=per_class, size_range=(300, 700), seed=1
    )


# ---------------------------------------------------------------- the core


def core_argv(data: Path, out: Path, args: argparse.Namespace, **changes: str) -> list[str]:
    """The default [training] config as a SageMaker job would pass it, minus the download;
    `changes` replace hyperparameters (`feature_cache="false"`)."""
    from dogclf.config import TrainingSection
    from dogclf.model.hyperparameters import hyperparameters_argv, hyperparameters_from_config

    hps = hyperparameters_from_config(TrainingSection())
    hps.update({"pretrained": "false", "batch-size": str(args.batch_size)})
    hps.update({k.replace("_", "-"): v for k, v in changes.items()})
    if args.amp is not None:
        hps["amp"] = args.amp
    if args.num_workers is not None:
        hps["num-workers"] = str(args.num_workers)
    if args.compile:
        hps["compile"] = "true"
    return [
        *hyperparameters_argv(hps),
        *("--data-dir", str(data), "--model-dir", str(out / "model")),
        *("--checkpoint-dir", str(out / "checkpoints"), "--print-freq", "0"),
    ]


class Core:
    def __init__(self, data: Path, out: Path, args: argparse.Namespace) -> None:
        from dogclf.training import distributed, train

        argv = core_argv(data, out, args, feature_cache="false")
        targs = train.parse_args(argv, environ={})
        device = distributed.device_for(targs.device, 0)
        hooks = train.Hooks(log=lambda line: print(f"  core: {line}", flush=True))
        self.run = train.TrainingRun(targs, hooks, device, distributed.setup(device))
        self.p = self.run.prepare()
        self.batches_left: Any = None

    def start(self, warmup: int) -> None:
        """Start the epoch (workers up, queue filled) and run the warm-up steps."""
        self.p.loaders.train_sampler.set_epoch(0)
        self.batches_left = iter(self.p.loaders.train)
        self.steps(warmup)

    def round(self, batches: int) -> Round:
        stats = self.steps(batches)
        return Round(stats.images_per_s, stats.data_share)

    def steps(self, count: int) -> Any:
        from dogclf.training.engine import train_one_epoch

        p = self.p
        return train_one_epoch(
            p.train_module,
            self.run.criterion,
            p.parts.optimizer,
            islice(self.batches_left, count),
            p.step,
            scaler=p.parts.scaler,
            on_bad=self.run.on_bad,
        )


# ---------------------------------------------------------------- the baseline


class Baseline:
    """The reference project's training step, kept as it was written (on the same device)."""

    def __init__(self, data: Path, batch_size: int, device: Any) -> None:
        import torch
        from torch import nn
        from torchvision import datasets, models, transforms

        transform = transforms.Compose(
            [
                transforms.Resize((224, 224)),
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )
        train_data = datasets.ImageFolder(str(data / "train"), transform=transform)
        self.loader = torch.utils.data.DataLoader(train_data, batch_size=batch_size, shuffle=True)
        valid_data = datasets.ImageFolder(str(data / "valid"), transform=transform)
        self.valid = torch.utils.data.DataLoader(valid_data, batch_size=batch_size)
        torch.manual_seed(0)
        model = models.resnet50(weights=None)  # the reference: pretrained=True
        for param in model.parameters():
            param.requires_grad = False
        model.fc = nn.Sequential(nn.Linear(2048, 128), nn.ReLU(inplace=True), nn.Linear(128, 133))
        self.model = model.to(device)
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(model.fc.parameters(), lr=0.001)
        self.device = device

    def start(self, warmup: int) -> None:
        self.batches_left = iter(self.loader)
        self.steps(islice(self.batches_left, warmup))

    def round(self, batches: int) -> Round:
        started = time.perf_counter()
        seen, waited = self.steps(islice(self.batches_left, batches))  # .item() syncs each step
        seconds = time.perf_counter() - started
        return Round(seen / seconds, waited / seconds)

    def whole_run(self, epochs: int, out: Path) -> tuple[float, int]:
        """`epochs` epochs as the reference ran them: train, valid, save when valid loss
        improved; (seconds, images the backbone ran over)."""
        import torch

        started, images, best = time.perf_counter(), 0, float("inf")
        for _ in range(epochs):
            images += self.steps(self.loader)[0]
            self.model.eval()
            valid_loss = 0.0
            with torch.no_grad():
                for inputs, labels in self.valid:
                    inputs, labels = inputs.to(self.device), labels.to(self.device)
                    valid_loss += self.criterion(self.model(inputs), labels).item()
                    images += inputs.size(0)
            if valid_loss < best:
                best = valid_loss
                torch.save(self.model.state_dict(), out / "model_transfer.pt")
        return time.perf_counter() - started, images

    def steps(self, loader: Any) -> tuple[int, float]:
        import torch

        self.model.train()
        running_loss, running_corrects, seen, waited = 0.0, 0, 0, 0.0
        mark = time.perf_counter()
        for inputs, labels in loader:
            waited += time.perf_counter() - mark
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            outputs = self.model(inputs)
            loss = self.criterion(outputs, labels)
            loss.backward()
            self.optimizer.step()
            _, preds = torch.max(outputs, 1)
            running_loss += loss.item() * inputs.size(0)
            running_corrects += int(torch.sum(preds == labels.data))
            seen += inputs.size(0)
            mark = time.perf_counter()
        return seen, waited


# ---------------------------------------------------------------- whole runs


def core_run(argv: list[str]) -> tuple[float, dict[str, Any]]:
    """`main(args)` as train-ec2 runs it; (wall seconds, metrics.json)."""
    from dogclf.training import train

    started = time.perf_counter()
    result = train.main(
        train.parse_args(argv, environ={}),
        train.Hooks(log=lambda line: print(f"  core: {line}", flush=True)),
    )
    return time.perf_counter() - started, result.metrics


def whole_runs(
    data: Path, tmp: Path, args: argparse.Namespace, core: Core, baseline: Baseline
) -> list[bool]:
    """Part 2: the reference's --epochs loop against dogclf's run (cache built, then reused)."""
    (tmp / "ref").mkdir()
    ref_s, ref_images = baseline.whole_run(args.epochs, tmp / "ref")
    ref_rate = ref_images / ref_s
    print(f"  reference loop: {args.epochs} epochs in {ref_s:.1f} s ({ref_rate:.2f} images/s)")
    runs = []
    for name in ("built", "reused"):
        argv = core_argv(
            data, tmp / name, args, epochs=str(args.epochs), patience="0",
            int8_min_agreement="101",  # the reference has no int8 step
        )  # fmt: skip
        argv += ["--feature-cache-dir", str(tmp / "feature-cache")]
        runs.append(core_run(argv))
        print(f"  dogclf ({name}): {runs[-1][0]:.1f} s, load average {load()}", flush=True)
    (built_s, built), (reused_s, reused) = runs
    cache = built["feature_cache"]
    epochs_s = sum(h["seconds"] for h in built["history"])
    print()
    print(f"{'whole run, ' + str(args.epochs) + ' epochs':<44}{'seconds':>10}{'ratio':>10}")
    print(f"{'reference-style loop':<44}{ref_s:>10.1f}")
    for label, seconds in (("dogclf, cache built", built_s), ("dogclf, cache reused", reused_s)):
        print(f"{label:<44}{seconds:>10.1f}{ref_s / seconds:>9.1f}x")
    print(
        f"  dogclf built run: cache pass {cache['seconds']:.1f} s ({cache['images']} images, "
        f"{cache['images_per_s']:.2f}/s), {args.epochs} epochs {epochs_s:.2f} s; reused run: "
        f"{reused['feature_cache']['status']}, same key: "
        f"{reused['feature_cache']['key'] == cache['key']}"
    )
    cache_ratio = cache["images_per_s"] / ref_rate
    bare = bare_forward_rate(args, core)
    print(
        f"  the ceiling: the same backbone's bare forward pass (batch {args.batch_size}, tensors "
        f"already in memory, no decoding) {bare:.2f} images/s; the cache pass runs at "
        f"{cache['images_per_s'] / bare:.2f}x it, and {TARGET_CACHE_RATE:g}x the reference "
        f"would need {TARGET_CACHE_RATE * ref_rate / bare:.2f}x it"
    )
    checks = [
        verdict("whole run, reference / dogclf (built)", ref_s / built_s, TARGET_RUN_RATIO),
        verdict("cache pass / reference images/s", cache_ratio, TARGET_CACHE_RATE),
        reused["feature_cache"]["status"] == "reused",
    ]
    return checks


def bare_forward_rate(args: argparse.Namespace, core: Core, seconds: float = 20.0) -> float:
    """Images/s of the frozen backbone the core built (BN folded, channels_last, its
    precision), called as the cache pass calls it, on one batch of tensors already in
    memory: the cache pass's rate if reading and decoding images cost nothing."""
    import torch

    frozen, step = core.p.train_module, core.p.step
    size = core.run.args.image_size
    images = torch.randn(args.batch_size, 3, size, size)
    no_targets = torch.empty(0, dtype=torch.long)

    def forward() -> None:
        x, _ = step.to_device(images, no_targets)
        with step.autocast():
            frozen.features(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    forward()  # warm-up
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        forward()
        done += args.batch_size
    return done / (time.perf_counter() - started)


def verdict(label: str, value: float, target: float) -> bool:
    ok = value >= target
    print(f"{label}: {value:.2f}x (target >= {target:g}x) {'OK' if ok else 'BELOW TARGET'}")
    return ok


def accuracy_runs(tmp: Path, args: argparse.Namespace) -> list[bool]:
    """Part 3: test accuracy without the cache, with it, and with --views random views."""
    from dogclf.training.synthetic import make_dataset

    data = make_dataset(
        tmp / "acc-data", classes=CLASSES, per_class=args.accuracy_per_class,
        size_range=(64, 128), seed=2,
    )  # fmt: skip
    common = {"arch": "resnet18", "image_size": "64", "epochs": str(args.epochs)}
    common.update(patience="0", int8_min_agreement="101", lr="0.003")
    settings = {
        "without the cache": {"feature_cache": "false"},
        "cache, augment_views 0 (default)": {"augment_views": "0"},
        f"cache, augment_views {args.views}": {"augment_views": str(args.views)},
    }
    results: dict[str, float] = {}
    for i, (label, extra) in enumerate(settings.items()):
        argv = core_argv(data, tmp / f"acc-{i}", args, **common, **extra)
        seconds, metrics = core_run(argv)
        results[label] = metrics["test"]["accuracy"] * 100
        print(f"  {label}: test accuracy {results[label]:.2f}% in {seconds:.1f} s", flush=True)
    print()
    print(f"{'accuracy (resnet18, 64 px, random weights)':<44}{'test %':>10}")
    for label, value in results.items():
        print(f"{label:<44}{value:>10.2f}")
    base, cached = results["without the cache"], results["cache, augment_views 0 (default)"]
    ok = abs(cached - base) <= TARGET_ACCURACY_POINTS or cached > base
    print(
        f"cache (default) vs without: {cached - base:+.2f} points "
        f"(target within {TARGET_ACCURACY_POINTS:g}) {'OK' if ok else 'BELOW TARGET'}"
    )
    return [ok]


# ---------------------------------------------------------------- main


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds")
    parser.add_argument("--batches", type=int, default=2, help="timed batches per round and side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches before them")
    parser.add_argument("--batch-size", type=int, default=64, help="both sides (config default)")
    parser.add_argument("--amp", choices=("true", "false"), help="core: override the config's amp")
    parser.add_argument("--num-workers", type=int, help="core: override the loader workers")
    parser.add_argument("--compile", action="store_true", help="core: torch.compile the backbone")
    parser.add_argument("--epochs", type=int, default=10, help="whole runs (parts 2 and 3)")
    parser.add_argument("--views", type=int, default=2, help="part 3: augment_views to compare")
    parser.add_argument("--accuracy-per-class", type=int, default=60, help="part 3's images")
    parser.add_argument(
        "--parts", default="1,2,3", help="which parts to run, e.g. 1,2 (3 has its own data)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse()

    import torch

    from dogclf.model.network import cpu_has_native_bf16

    cuda = torch.cuda.is_available()
    hardware = (
        torch.cuda.get_device_name(0)
        if cuda
        else f"CPU, native bf16: {'yes' if cpu_has_native_bf16() else 'no'}"
    )
    images = args.batches * args.batch_size
    print(
        f"resnet50, frozen backbone, batch {args.batch_size}, {args.rounds} rounds x "
        f"{images} timed images per side, after {args.warmup} warm-up batches; {hardware}; "
        f"{torch_line()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="dogclf-bench-") as tmp:
        started = time.perf_counter()
        epoch = args.warmup + args.rounds * args.batches  # batches: one epoch, no restarts
        data = make_data(Path(tmp), epoch * args.batch_size)
        print(f"  generated {data} in {time.perf_counter() - started:.0f} s", flush=True)
        parts = set(args.parts.split(","))
        checks: list[bool] = []
        if parts & {"1", "2"}:
            core = Core(data, Path(tmp), args)
            baseline = Baseline(data, args.batch_size, core.run.device)
        if "1" in parts:
            checks.append(per_step(args, core, baseline))
        if "2" in parts:
            checks += whole_runs(data, Path(tmp), args, core, baseline)
        if "3" in parts:
            checks += accuracy_runs(Path(tmp), args)
    print(f"load average at end: {load()} (other work on this machine skews all figures)")
    return 0 if all(checks) else 1


def per_step(args: argparse.Namespace, core: Core, baseline: Baseline) -> bool:
    """Part 1: images/s of one training step, rounds alternating the sides."""
    results: dict[str, list[Round]] = {"core": [], "baseline": []}
    sides: dict[str, Core | Baseline] = {"core": core, "baseline": baseline}
    for name, side in sides.items():
        started = time.perf_counter()
        side.start(args.warmup)  # with --compile, the core compiles here
        print(f"  {name} warm-up: {time.perf_counter() - started:.1f} s", flush=True)
    for r in range(args.rounds):
        # Alternate the order: a burst of other load on the machine hits both sides alike.
        order = ("core", "baseline") if r % 2 == 0 else ("baseline", "core")
        for name in order:
            results[name].append(sides[name].round(args.batches))
        c, b = results["core"][-1], results["baseline"][-1]
        print(
            f"  round {r + 1}: core {c.images_per_s:.2f}/s (loader {c.loader_share:.0%}), "
            f"baseline {b.images_per_s:.2f}/s (loader {b.loader_share:.0%}), "
            f"ratio {c.images_per_s / b.images_per_s:.2f}x, load average {load()}",
            flush=True,
        )
    print()
    print(f"{'training step, no cache (median)':<36}{'images/s':>10}{'loader share':>14}")
    for name, label in (("core", "dogclf core"), ("baseline", "baseline (reference-style)")):
        rows = results[name]
        print(
            f"{label:<36}{statistics.median(x.images_per_s for x in rows):>10.2f}"
            f"{statistics.median(x.loader_share for x in rows):>14.1%}"
        )
    ratio = statistics.median(
        c.images_per_s / b.images_per_s
        for c, b in zip(results["core"], results["baseline"], strict=True)
    )
    return verdict("training step, core / baseline", ratio, TARGET_RATIO)


if __name__ == "__main__":
    sys.exit(main())
