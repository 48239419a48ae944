"""The dogImages layout on disk -> datasets and data loaders.

`train/ valid/ test/`, one `NNN.Breed_name/` folder per class in each; labels are the
folder names without the number, in folder order. Decoding goes through the same
`decode_image` as serving (any mode -> RGB), with JPEG draft decoding so large photos cost
a fraction of a full decode. An unreadable file never crashes a worker: the worker returns
a marker, and the training process reports the path and skips it (or stops, by flag).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from dogclf.errors import DatasetError
from dogclf.model.dataset import IMAGE_SUFFIXES, SPLITS, breed_name, class_folders, image_files
from dogclf.model.preprocess import (
    ImageDecodeError,
    eval_transform,
    load_image_file,
    resize_size,
    train_transform,
)

Sample = tuple[str, int]  # (path, class index)


def _list_images(folder: Path) -> list[str]:
    return [str(p) for p in image_files(folder)]


@dataclass
class DogImages:
    """What is on disk: class folders (shared by all splits) and the samples per split."""

    folders: list[str]
    samples: dict[str, list[Sample]]
    dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [breed_name(f) for f in self.folders]

    @property
    def num_classes(self) -> int:
        return len(self.folders)


def split_dirs(
    data_dir: Path | None = None, channels: dict[str, Path | None] | None = None
) -> dict[str, Path]:
    """Where each split lives: an explicit channel wins over `data_dir/<split>`."""
    channels = channels or {}
    dirs: dict[str, Path] = {}
    for split in SPLITS:
        explicit = channels.get(split)
        if explicit is not None:
            dirs[split] = Path(explicit)
        elif data_dir is not None:
            dirs[split] = Path(data_dir) / split
        else:
            raise DatasetError(
                f"no {split} data: neither --{split}-dir (SM_CHANNEL_{split.upper()}) "
                "nor --data-dir is set",
                "pass --data-dir DIR holding train/ valid/ test/ (the dogImages layout)",
            )
    return dirs


def scan_dataset(dirs: dict[str, Path]) -> DogImages:
    """List every split, checking the layout: same classes everywhere, no empty split."""
    for split, path in dirs.items():
        if not path.is_dir():
            raise DatasetError(
                f"{split} split not found: {path} is not a folder",
                "the dataset needs train/ valid/ test/ with one NNN.Breed folder per class",
            )
    per_split = {split: class_folders(path) for split, path in dirs.items()}
    reference = per_split["train"]
    if not reference:
        raise DatasetError(
            f"{dirs['train']} has no class folders",
            "put each class's images in a folder such as train/001.Affenpinscher/",
        )
    problems = []
    for split in ("valid", "test"):
        missing = sorted(set(reference) - set(per_split[split]))
        extra = sorted(set(per_split[split]) - set(reference))
        if missing:
            problems.append(f"{split}/ lacks {_few(missing)}")
        if extra:
            problems.append(f"{split}/ has {_few(extra)} that train/ lacks")
    if problems:
        raise DatasetError(
            "the splits do not have the same classes: " + "; ".join(problems),
            "every class folder must exist in train/, valid/ and test/",
        )
    labels = [breed_name(f) for f in reference]
    dupes = sorted({name for name in labels if labels.count(name) > 1})
    if dupes:
        raise DatasetError(
            f"two class folders give the same breed name: {_few(dupes)}",
            "rename the folders so each breed appears once",
        )
    samples: dict[str, list[Sample]] = {}
    for split, path in dirs.items():
        samples[split] = [
            (image, index)
            for index, folder in enumerate(reference)
            for image in _list_images(path / folder)
        ]
        if not samples[split]:
            raise DatasetError(
                f"the {split} split in {path} has no images",
                f"image files must end in one of {', '.join(sorted(IMAGE_SUFFIXES))}",
            )
    return DogImages(folders=reference, samples=samples, dirs=dict(dirs))


def _few(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class ImageFiles(Dataset[tuple[Any, int, str]]):
    """(image tensor or None, label, path or error). Decoding failures become markers."""

    def __init__(self, samples: list[Sample], transform: Callable[[Any], Any], draft_size: int):
        self.samples = samples
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        path, label = self.samples[index]
        try:
            image = load_image_file(path, draft_size=self.draft_size)
        except (ImageDecodeError, OSError) as exc:
            return None, label, f"{path}: {exc}"
        return self.transform(image), label, path


@dataclass
class BadImage:
    path_and_reason: str


def collate(batch: list[tuple[Any, int, str]]) -> tuple[torch.Tensor, torch.Tensor, list[BadImage]]:
    """Stack the good samples; hand the unreadable ones back to the training process."""
    good = [(image, label) for image, label, _ in batch if image is not None]
    bad = [BadImage(info) for image, _, info in batch if image is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), bad
    images = torch.stack([image for image, _ in good])
    targets = torch.tensor([label for _, label in good], dtype=torch.long)
    return images, targets, bad


class ShardSampler(Sampler[int]):
    """Evaluation shard for one rank: every rank-th sample, no padding, no duplicates.

    DistributedSampler pads the last shard with repeats, which would count some images
    twice in valid/test metrics; with this, the all-reduced sums are exact.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def default_num_workers(local_world_size: int = 1) -> int:
    """What the host has: its CPUs (the ones this process may use), shared by local ranks."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, local_world_size))


class EpochSampler(Protocol):
    def set_epoch(self, epoch: int) -> None: ...


@dataclass
class Loaders:
    """What an epoch iterates: batches of (inputs, targets, unreadable files). Images from
    build_loaders, or the feature cache's features (dogclf/training/cached.py)."""

    train: Iterable[Any]
    valid: Iterable[Any]
    test: Iterable[Any]
    train_sampler: EpochSampler  # set_epoch(epoch) before each epoch: its shuffle


def build_loaders(
    data: DogImages,
    *,
    image_size: int,
    batch_size: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    pin_memory: bool = False,
) -> Loaders:
    """Only the train loader shuffles (a seeded DistributedSampler, also with one process,
    so an epoch's order is the same after a resume); valid/test are sharded, not padded."""
    train_set = ImageFiles(data.samples["train"], train_transform(image_size), image_size)
    eval_tf = eval_transform(image_size)
    eval_sets = {
        split: ImageFiles(data.samples[split], eval_tf, resize_size(image_size))
        for split in ("valid", "test")
    }
    train_sampler: DistributedSampler[Any] = DistributedSampler(
        train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
    )
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "collate_fn": collate,
        "pin_memory": pin_memory,
    }
    if num_workers > 0:
        # Workers live across epochs (no re-fork per epoch) and keep batches queued ahead.
        common.update(persistent_workers=True, prefetch_factor=4)
    # A last training batch of one sample breaks batch norm in train mode: drop only that.
    drop_last = len(train_sampler) % batch_size == 1 and len(train_sampler) > 1
    train = DataLoader(train_set, sampler=train_sampler, drop_last=drop_last, **common)
    valid, test = (
        DataLoader(ds, sampler=ShardSampler(len(ds), rank, world_size), **common)
        for ds in eval_sets.values()
    )
    return Loaders(train=train, valid=valid, test=test, train_sampler=train_sampler)


class PassImages(Dataset[tuple[Any, int, str, int]]):
    """Several passes over image lists (each with its own transform) as one dataset, each
    item with its position in the whole: the feature cache's one loader for every split and
    view (one pool of workers, one pipeline), its ranks' shares put back in order by it."""

    def __init__(self, passes: list[ImageFiles]) -> None:
        self.passes = passes
        self.offsets = [0]
        for images in passes:
            self.offsets.append(self.offsets[-1] + len(images))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> tuple[Any, int, str, int]:
        number = bisect.bisect_right(self.offsets, index) - 1
        return (*self.passes[number][index - self.offsets[number]], index)


def collate_indexed(
    batch: list[tuple[Any, int, str, int]],
) -> tuple[torch.Tensor, torch.Tensor, list[BadImage], torch.Tensor]:
    """collate, plus the positions of the good samples."""
    images, targets, bad = collate([item[:3] for item in batch])
    where = torch.tensor([i for image, _, _, i in batch if image is not None], dtype=torch.long)
    return images, targets, bad, where


def cache_pass_loader(
    images: PassImages, share: ShardSampler, batch_size: int, num_workers: int, **kwargs: Any
) -> DataLoader[Any]:
    """One pass over this rank's `share` for the feature cache; `seed` (in kwargs) fixes the
    random views a training transform draws in the workers."""
    generator = torch.Generator()
    generator.manual_seed(int(kwargs.get("seed", 0)))
    extra: dict[str, Any] = {"prefetch_factor": 4} if num_workers > 0 else {}
    return DataLoader(
        images,
        batch_size=batch_size,
        sampler=share,
        num_workers=num_workers,
        collate_fn=collate_indexed,
        pin_memory=bool(kwargs.get("pin_memory", False)),
        generator=generator,
        **extra,
    )
