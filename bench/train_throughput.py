"""Training images/s of the training core against a reference-style loop, same run, same data.

In one run, on generated 300-700 px JPEGs (the sizes of dogImages photos), resnet50 with a
frozen backbone (random weights: ImageNet weights cannot be fetched here, and the speed is
the same):
  core      what `main(args)` builds for the default `[training]` config (TrainingRun.prepare:
            data loaders, the frozen-backbone fast path, AdamW; AMP on GPU, bf16 backbone on a
            CPU with native bf16), stepped by engine.train_one_epoch
  baseline  a loop written like the reference project: ImageFolder + PIL Resize((224, 224)) +
            ToTensor + Normalize, DataLoader(shuffle=True) with default settings (no workers),
            resnet50 with requires_grad=False on the backbone and fc 2048-128-133, Adam,
            model.train(), fp32, running loss and accuracy per step
Each side starts one epoch and runs --warmup batches; then each round times the next
--batches batches of each side (the same number of images for both), alternating which
side goes first; the ratio is the median of the per-round ratios. "loader share" is the
part of the step time spent waiting for the next batch. The core's precision is in its
`run:` line (bfloat16-backbone, bfloat16-autocast on GPU, or fp32).
Target (issue 3): core >= 2x baseline (2-core CPU); on a GPU also read images/s with AMP and
the loader share (e.g. --batch-size 128 --batches 20).

Run: python bench/train_throughput.py [--rounds 5] [--batches 2] [--batch-size 64] [--amp false]
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

TARGET_RATIO = 2.0
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


def core_argv(data: Path, out: Path, args: argparse.Namespace) -> list[str]:
    """The default [training] config as a SageMaker job would pass it, minus the download."""
    from dogclf.config import TrainingSection
    from dogclf.model.hyperparameters import hyperparameters_argv, hyperparameters_from_config

    hps = hyperparameters_from_config(TrainingSection())
    hps.update({"pretrained": "false", "batch-size": str(args.batch_size)})
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

        targs = train.parse_args(core_argv(data, out, args), environ={})
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


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds")
    parser.add_argument("--batches", type=int, default=2, help="timed batches per round and side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches before them")
    parser.add_argument("--batch-size", type=int, default=64, help="both sides (config default)")
    parser.add_argument("--amp", choices=("true", "false"), help="core: override the config's amp")
    parser.add_argument("--num-workers", type=int, help="core: override the loader workers")
    parser.add_argument("--compile", action="store_true", help="core: torch.compile the backbone")
    args = parser.parse_args()

    import torch

    from dogclf.training.frozen import cpu_has_native_bf16

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
        core = Core(data, Path(tmp), args)
        baseline = Baseline(data, args.batch_size, core.run.device)
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
    print(f"{'training step (median of rounds)':<36}{'images/s':>10}{'loader share':>14}")
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
    ok = ratio >= TARGET_RATIO
    print(
        f"core / baseline: {ratio:.2f}x (target >= {TARGET_RATIO:g}x) "
        f"{'OK' if ok else 'BELOW TARGET'}"
    )
    print(f"load average at end: {load()} (other work on this machine skews all figures)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
