"""The frozen backbone's features, computed once per image and view, then reused.

With `freeze_backbone`, nothing below the head changes during training, so running the
backbone over every image every epoch only repeats work: the cache pass runs it once per
image (valid and test too; `augment_views` random training views per train image, or the
eval transform alone), and every epoch trains the head on the stored features.

On disk, under a root folder (the run's checkpoint folder's `feature-cache/`, which on
SageMaker is synced with the job's CheckpointConfig S3 URI that a tuning job's trials
share):

    <root>/<key>/train.pt valid.pt test.pt   {"features": [views, N, ...] fp16|fp32,
                                              "labels": [N], "files": [relative path]}
    <root>/<key>/manifest.json               written last: key, sizes and sha256 of each

`key` is a sha256 over everything that determines the features (see cache_key). A folder
is written as `.tmp-*` and renamed into place; when another process got there first, the
rename fails and this copy is discarded (rename-or-discard), so two trials starting
together never mix files. A folder whose manifest is missing or does not match its files
(an interrupted write, a partial S3 sync) is moved aside and rebuilt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dogclf.errors import DogclfError
from dogclf.model import feature_cache_layout as layout
from dogclf.model.feature_cache_layout import FORMAT_VERSION, MANIFEST, SPLITS

# Bump when what a view is changes (the transforms in model/preprocess.py, the cropping,
# the feature layout): older caches then get another key and are never read.
TRANSFORM_VERSION = 2
FP16_MAX = 65504.0


@dataclass
class SplitFeatures:
    """One split's cached features: `features[v, i]` is view v of image i."""

    features: torch.Tensor  # [views, N, *feature shape], float16 or float32
    labels: torch.Tensor  # [N] int64
    files: list[str]  # relative to the split's folder; unreadable images left out

    @property
    def views(self) -> int:
        return int(self.features.shape[0])

    def __len__(self) -> int:
        return int(self.labels.numel())


@dataclass
class CacheInfo:
    """How this run got its features: what metrics.json's `feature_cache` block says."""

    status: str  # "built" | "reused"
    key: str
    path: str
    views: int
    dtype: str
    images: int  # images (views included) the backbone ran over; 0 when reused
    seconds: float
    bytes: int
    # Where a reused cache came from: "checkpoint folder" | "feature_cache channel".
    source: str | None = None

    @property
    def images_per_s(self) -> float:
        return round(self.images / self.seconds, 2) if self.seconds > 0 and self.images else 0.0

    def as_dict(self) -> dict[str, Any]:
        """metrics.json's `feature_cache` block."""
        shown = dataclasses.asdict(self)
        shown.update(seconds=round(self.seconds, 3), images_per_s=self.images_per_s)
        return shown


# ---------------------------------------------------------------- the key


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def files_identity(dirs: dict[str, Path], samples: dict[str, list[tuple[str, int]]]) -> list[Any]:
    """Each split's images as (relative path, class, size, content sha256), in order.

    Content, not mtime: a SageMaker channel (and the emulator's download) writes every file
    anew for each job, so mtimes differ between trials that read the very same images."""
    listed: list[Any] = []
    for split in SPLITS:
        root = Path(dirs[split])
        for path, label in samples[split]:
            p = Path(path)
            name = p.relative_to(root).as_posix()
            listed.append([split, name, label, p.stat().st_size, file_digest(p)])
    return listed


def weights_identity(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the backbone's parameters and buffers (a state_dict without the head):
    ImageNet weights and seeded random ones alike, exactly (other weights: another key)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str(data.dtype).encode() + str(tuple(data.shape)).encode())
        digest.update(data.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 of the JSON of `parts` (arch, weights, image size, views, precision,
    transform version, the files)."""
    text = json.dumps({"transform_version": TRANSFORM_VERSION, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- reading


def _manifest_ok(folder: Path, key: str) -> dict[str, Any] | None:
    """The manifest when it names `key` and every file has its recorded size and sha256."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not layout.lists_every_split(manifest) or manifest.get("key") != key:
        return None
    for name, (size, digest) in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size or file_digest(path) != digest:
            return None
    return manifest


def load(folder: Path, key: str) -> dict[str, SplitFeatures] | None:
    """The cache in `folder` if it is complete and is `key`'s; None otherwise."""
    if _manifest_ok(folder, key) is None:
        return None
    splits: dict[str, SplitFeatures] = {}
    for split in SPLITS:
        try:
            state = torch.load(
                folder / layout.split_file(split), map_location="cpu", weights_only=True
            )
        except Exception:  # a file that passed its digest yet does not load: rebuild
            return None
        splits[split] = SplitFeatures(state["features"], state["labels"], list(state["files"]))
    return splits


def set_aside(folder: Path) -> None:
    """A broken cache folder out of the way (renamed, then removed; another process may be
    reading the same name, and a rename never leaves it half-deleted under that name)."""
    aside = folder.with_name(f".stale-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        folder.rename(aside)
    except OSError:
        return  # gone already, or another process moved it
    shutil.rmtree(aside, ignore_errors=True)


# ---------------------------------------------------------------- writing


def storage_dtype(features: torch.Tensor) -> torch.dtype:
    """fp16 (half the bytes; its 3 significant digits are far finer than what a linear
    head can use) unless a value would not fit, then fp32."""
    finite = features.isfinite().all()
    if finite and (features.numel() == 0 or features.abs().max() < FP16_MAX):
        return torch.float16
    return torch.float32


def _save_file(obj: Any, path: Path) -> tuple[int, str]:
    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return path.stat().st_size, file_digest(path)


def write(root: Path, key: str, splits: dict[str, SplitFeatures], info: dict[str, Any]) -> Path:
    """Write the cache as `<root>/<key>/`: a temp folder, manifest last, then one rename.
    When `<root>/<key>` already exists (another process won the race), this copy is
    discarded and theirs kept."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / key
    tmp = root / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = {}
        for split, data in splits.items():
            state = {"features": data.features, "labels": data.labels, "files": data.files}
            name = layout.split_file(split)
            files[name] = _save_file(state, tmp / name)
        manifest = {"format_version": FORMAT_VERSION, "key": key, "files": files, **info}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        # The target exists: another process's complete copy wins, this one is discarded.
        with contextlib.suppress(OSError):
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


# ---------------------------------------------------------------- computing


Batches = Iterable[tuple[torch.Tensor, torch.Tensor, list[Any], torch.Tensor]]


def compute(
    backbone: Callable[[torch.Tensor], torch.Tensor],
    batches: Batches,
    *,
    on_batch: Callable[[int], None] = lambda n: None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, positions) of every readable image in `batches`, on the CPU, in order.

    Each batch is (images, labels, unreadable, positions): positions index the split's
    sample list, so shares computed by several ranks can be put back together."""
    outputs: list[torch.Tensor] = []
    positions: list[torch.Tensor] = []
    with torch.inference_mode():
        for images, _labels, _bad, where in batches:
            if where.numel() == 0:
                continue
            outputs.append(backbone(images).float().cpu())
            positions.append(where)
            on_batch(int(where.numel()))
    if not outputs:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(outputs), torch.cat(positions)


def assemble(
    shares: list[tuple[torch.Tensor, torch.Tensor]],
    labels: list[int],
    files: list[str],
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every rank's (features, positions) of one view -> features in sample order, the
    labels and files of the images that were read (unreadable ones left out)."""
    nonempty = [(f, p) for f, p in shares if p.numel()]
    if not nonempty:
        raise DogclfError(
            "no image of a split could be read for the feature cache",
            "check the dataset's image files (dogclf upload checks them)",
        )
    features = torch.cat([f for f, _ in nonempty])
    positions = torch.cat([p for _, p in nonempty])
    order = torch.argsort(positions)
    kept = positions[order].tolist()
    return (
        features[order],
        torch.tensor([labels[i] for i in kept], dtype=torch.long),
        [files[i] for i in kept],
    )


class Timer:
    """Images/s of the cache pass, logged every `every` images."""

    def __init__(self, total: int, log: Callable[[str], None], every: int) -> None:
        self.total, self.log, self.every = total, log, every
        self.done, self.next_log = 0, every
        self.started = time.perf_counter()

    def __call__(self, n: int) -> None:
        self.done += n
        if self.every and self.done >= self.next_log:
            self.next_log += self.every
            self.log(
                f"feature cache: {self.done}/{self.total} images "
                f"({self.rate:.1f} images/s on this rank)"
            )

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0
