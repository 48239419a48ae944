"""Training a frozen backbone's head on cached features: the cache pass, and the loaders.

`obtain` gives every rank the whole cache (dogclf/training/feature_cache.py): reused when
every rank finds it complete under its key, else built. Building, each rank runs the
backbone over its own share of every split (every world_size-th image, as ShardSampler
shards evaluation) and the shares are all-gathered, so every rank holds the whole cache in
memory; each host's local rank 0 writes it (hosts of a multi-instance job do not share a
disk; each syncs its own checkpoint folder). The epochs then iterate `feature_loaders`:
the same batches of (inputs, targets, unreadable) that image loaders give, so
engine.train_one_epoch / evaluate and the DDP-wrapped head run unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from dogclf.training import distributed
from dogclf.training import feature_cache as fc
from dogclf.training.data import (
    DogImages,
    ImageFiles,
    Loaders,
    PassImages,
    ShardSampler,
    cache_pass_loader,
    eval_transform,
    resize_size,
    train_transform,
)

# ---------------------------------------------------------------- loaders over features


class CachedTrainSampler:
    """DistributedSampler's contract over (image, view) pairs: each epoch every image once,
    in a seeded shuffle, with one of its views drawn at random; padded by repeats to a
    multiple of world_size and sharded rank::world_size (what DistributedSampler does)."""

    def __init__(self, length: int, views: int, rank: int, world_size: int, seed: int) -> None:
        self.length, self.views, self.rank, self.world = length, views, rank, world_size
        self.seed, self.epoch = seed, 0
        self.per_rank = math.ceil(length / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(image indices, view indices) of this rank's share of the epoch."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.length, generator=g)
        views = torch.randint(self.views, (self.length,), generator=g)
        total = self.per_rank * self.world
        if total > self.length:
            repeat = math.ceil(total / self.length)
            order, views = order.repeat(repeat)[:total], views.repeat(repeat)[:total]
        return order[self.rank : total : self.world], views[self.rank : total : self.world]

    def __len__(self) -> int:
        return self.per_rank


@dataclass
class FeatureBatches:
    """Batches of (features as fp32, labels, no unreadable files) of one split."""

    split: fc.SplitFeatures
    batch_size: int
    pick: Callable[[], tuple[torch.Tensor, torch.Tensor]]  # (image indices, view indices)
    drop_last_single: bool = False  # a last batch of one sample (batch norm in train mode)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[Any]]]:
        images, views = self.pick()
        n = int(images.numel())
        if self.drop_last_single and n % self.batch_size == 1 and n > 1:
            n -= 1
        for start in range(0, n, self.batch_size):
            i, v = images[start : start + self.batch_size], views[start : start + self.batch_size]
            yield self.split.features[v, i].float(), self.split.labels[i], []


def feature_loaders(
    splits: dict[str, fc.SplitFeatures], *, batch_size: int, rank: int, world_size: int, seed: int
) -> Loaders:
    train = splits["train"]
    sampler = CachedTrainSampler(len(train), train.views, rank, world_size, seed)

    def shard(split: fc.SplitFeatures) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        indices = torch.tensor(ShardSampler(len(split), rank, world_size).indices, dtype=torch.long)
        return lambda: (indices, torch.zeros_like(indices))

    return Loaders(
        train=FeatureBatches(train, batch_size, sampler.pairs, drop_last_single=True),
        valid=FeatureBatches(splits["valid"], batch_size, shard(splits["valid"])),
        test=FeatureBatches(splits["test"], batch_size, shard(splits["test"])),
        train_sampler=sampler,
    )


# ---------------------------------------------------------------- the cache pass


@dataclass
class CacheRequest:
    """What the cache pass needs from the run (train.TrainingRun fills it in)."""

    root: Path
    # Read-only caches from earlier jobs (the `feature_cache` input channel), or None.
    shared: Path | None
    key_parts: Callable[[], dict[str, Any]]  # arch, weights, image size, views, precision
    features: Callable[[torch.Tensor], torch.Tensor]  # images on the CPU -> features
    image_size: int
    views: int  # augment_views: 0 = the eval transform only
    batch_size: int
    num_workers: int
    seed: int
    on_bad: Callable[[list[Any]], None]
    log: Callable[[str], None]
    log_every: int = 0  # images between progress lines (0: none)
    pin_memory: bool = False


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank (the key: one rank hashes the images)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def every_rank(flag: bool) -> bool:
    """True when `flag` is true on all ranks (an object collective: gloo and nccl alike)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    flags: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(flags, flag)
    return all(flags)


def obtain(
    request: CacheRequest, data: DogImages, info: Any
) -> tuple[dict[str, fc.SplitFeatures], fc.CacheInfo]:
    """The whole cache on every rank: reused when complete everywhere, else built."""
    key = broadcast(_key(request, data) if info.is_main else None)
    folder = request.root / key
    started = fc.Timer(0, request.log, 0)
    found, loaded = folder, fc.load(folder, key)
    if loaded is None and request.shared is not None:
        # Read in place: a channel is downloaded afresh per job and the stage prefix
        # already keeps it, so copying it into the checkpoint folder would only upload
        # the same bytes again under checkpoints/<job>/.
        found = request.shared / key
        loaded = fc.load(found, key) if found.is_dir() else None
    if every_rank(loaded is not None):
        assert loaded is not None
        views = loaded["train"].views
        stored = str(loaded["train"].features.dtype).removeprefix("torch.")
        cache = fc.CacheInfo("reused", key, str(found), views, stored, 0, started.seconds, 0)
        cache.bytes = fc.folder_bytes(found)
        cache.source = "checkpoint folder" if found == folder else "feature_cache channel"
        return loaded, cache
    # Checked again: another process may have completed it meanwhile.
    if info.local_rank == 0 and folder.exists() and fc.load(folder, key) is None:
        request.log(f"feature cache: {folder} is incomplete or stale; rebuilding it")
        fc.set_aside(folder)
    splits, timer = build(request, data, info)
    dtype = fc.storage_dtype(torch.cat([s.features.flatten() for s in splits.values()]))
    splits = {
        k: fc.SplitFeatures(s.features.to(dtype), s.labels, s.files) for k, s in splits.items()
    }
    if info.local_rank == 0:
        fc.write(request.root, key, splits, {"views": request.views, "dtype": str(dtype)})
    distributed.barrier()  # written on every host before any rank moves on
    images = sum(len(s) * s.views for s in splits.values())
    name = str(dtype).removeprefix("torch.")
    views = splits["train"].views
    cache = fc.CacheInfo("built", key, str(folder), views, name, images, timer.seconds, 0)
    cache.bytes = fc.folder_bytes(folder) if folder.is_dir() else 0
    return splits, cache


def _key(request: CacheRequest, data: DogImages) -> str:
    return fc.cache_key(
        {**request.key_parts(), "files": fc.files_identity(data.dirs, data.samples)}
    )


def build(
    request: CacheRequest, data: DogImages, info: Any
) -> tuple[dict[str, fc.SplitFeatures], fc.Timer]:
    """Run the backbone over this rank's share of every split and view (one loader), gather
    the shares, put each pass back in sample order."""
    size, draft = request.image_size, resize_size(request.image_size)
    if request.views == 0:
        passes = [("train", ImageFiles(data.samples["train"], eval_transform(size), draft))]
    else:  # random crops of the image at its own size, as the training loader reads it
        views = ImageFiles(data.samples["train"], train_transform(size), size)
        passes = [("train", views)] * request.views
    for split in ("valid", "test"):
        passes.append((split, ImageFiles(data.samples[split], eval_transform(size), draft)))
    images = PassImages([p for _, p in passes])
    timer = fc.Timer(math.ceil(len(images) / info.world_size), request.log, request.log_every)
    share = ShardSampler(len(images), info.rank, info.world_size)
    loader = cache_pass_loader(
        images,
        share,
        request.batch_size,
        request.num_workers,
        seed=request.seed,
        pin_memory=request.pin_memory,
    )
    mine = fc.compute(request.features, _reporting(loader, request.on_bad), on_batch=timer)
    shares = [s for s in _gather(mine) if s[1].numel()] or [mine]  # a rank may have none
    features = torch.cat([f for f, _ in shares])
    where = torch.cat([w for _, w in shares])
    per_split: dict[str, list[torch.Tensor]] = {split: [] for split in fc.SPLITS}
    kept: dict[str, tuple[torch.Tensor, list[str]]] = {}
    for number, (split, _) in enumerate(passes):
        start, end = images.offsets[number], images.offsets[number + 1]
        in_pass = (where >= start) & (where < end)
        samples, root = data.samples[split], Path(data.dirs[split])
        files = [Path(path).relative_to(root).as_posix() for path, _ in samples]
        pass_features, labels, names = fc.assemble(
            [(features[in_pass], where[in_pass] - start)], [label for _, label in samples], files
        )
        per_split[split].append(pass_features)
        kept[split] = (labels, names)
    splits = {
        split: fc.SplitFeatures(torch.stack(per_split[split]), *kept[split]) for split in fc.SPLITS
    }
    return splits, timer


def _reporting(loader: Any, on_bad: Callable[[list[Any]], None]) -> Iterator[Any]:
    for images, labels, bad, where in loader:
        if bad:
            on_bad(bad)
        yield images, labels, bad, where


def _gather(share: tuple[torch.Tensor, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every rank's (features, positions), in rank order."""
    if not (dist.is_available() and dist.is_initialized()):
        return [share]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, share)
    return list(gathered)
