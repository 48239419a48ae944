"""The dogImages layout on disk -> datasets and loaders (real files, real decoding)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from dogclf.errors import DatasetError
from dogclf.training import train
from dogclf.training.data import (
    ShardSampler,
    breed_name,
    build_loaders,
    collate,
    default_num_workers,
    scan_dataset,
    split_dirs,
)
from dogclf.training.synthetic import make_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data", classes=3, per_class=10, size_range=(40, 60), seed=1)


def test_breed_names_come_from_the_folder_names() -> None:
    assert breed_name("001.Affenpinscher") == "Affenpinscher"
    assert breed_name("133.Yorkshire_terrier") == "Yorkshire_terrier"
    assert breed_name("Beagle") == "Beagle"


def test_classes_are_the_sorted_folders(dataset: Path) -> None:
    data = scan_dataset(split_dirs(dataset))
    assert data.folders == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
    assert data.labels == ["Affenpinscher", "Afghan_hound", "Airedale_terrier"]
    assert {split: len(s) for split, s in data.samples.items()} == {
        "train": 18,
        "valid": 6,
        "test": 6,
    }
    assert all(label in (0, 1, 2) for _, label in data.samples["train"])


def test_splits_with_different_classes_are_refused_by_name(dataset: Path) -> None:
    shutil.rmtree(dataset / "valid" / "002.Afghan_hound")
    (dataset / "test" / "004.Akita").mkdir()
    with pytest.raises(DatasetError) as err:
        scan_dataset(split_dirs(dataset))
    assert "valid/ lacks 002.Afghan_hound" in err.value.message
    assert "test/ has 004.Akita that train/ lacks" in err.value.message


def test_missing_split_and_missing_data_dir_are_clear(dataset: Path) -> None:
    shutil.rmtree(dataset / "test")
    with pytest.raises(DatasetError, match="test split not found"):
        scan_dataset(split_dirs(dataset))
    with pytest.raises(DatasetError, match="--data-dir"):
        split_dirs(None)


def test_any_image_mode_becomes_rgb(dataset: Path) -> None:
    folder = dataset / "train" / "001.Affenpinscher"
    Image.new("L", (50, 40), 128).save(folder / "grey.jpg")
    Image.new("CMYK", (50, 40), (10, 20, 30, 40)).save(folder / "cmyk.jpg")
    Image.new("RGBA", (50, 40), (255, 0, 0, 100)).save(folder / "alpha.png")
    Image.new("P", (50, 40), 3).save(folder / "palette.png")
    data = scan_dataset(split_dirs(dataset))
    loaders = build_loaders(data, image_size=32, batch_size=64, num_workers=0)
    images, _targets, _bad = next(iter(loaders.valid))
    assert images.shape[1:] == (3, 32, 32)
    train_set = loaders.train.dataset
    odd = [
        i
        for i, (p, _) in enumerate(train_set.samples)
        if Path(p).stem in {"grey", "cmyk", "alpha", "palette"}
    ]  # type: ignore[attr-defined]
    assert len(odd) == 4
    for i in odd:
        image, label, _ = train_set[i]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 0


def test_unreadable_files_become_markers_not_worker_crashes(dataset: Path) -> None:
    broken = dataset / "train" / "002.Afghan_hound" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    data = scan_dataset(split_dirs(dataset))
    loaders = build_loaders(data, image_size=32, batch_size=64, num_workers=1)
    images, targets, bad = next(iter(loaders.train))
    assert len(bad) == 1 and str(broken) in bad[0].path_and_reason
    assert images.shape[0] == targets.shape[0] == 18  # the 18 good ones still train
    empty = collate([(None, 0, "x.jpg: broken")])
    assert empty[0].numel() == 0 and len(empty[2]) == 1


def test_only_the_train_loader_shuffles_and_eval_shards_are_exact(dataset: Path) -> None:
    data = scan_dataset(split_dirs(dataset))
    loaders = build_loaders(data, image_size=32, batch_size=4, num_workers=0)
    assert isinstance(loaders.train.sampler, DistributedSampler) and loaders.train.sampler.shuffle
    assert isinstance(loaders.valid.sampler, ShardSampler)
    assert list(loaders.test.sampler) == [0, 1, 2, 3, 4, 5]
    shards = [list(ShardSampler(7, rank, 2)) for rank in (0, 1)]
    assert shards == [[0, 2, 4, 6], [1, 3, 5]]  # no padding, no duplicates
    assert default_num_workers() >= 1


def _tiny_args(data: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        "--data-dir", str(data), "--model-dir", str(tmp / "model"),
        "--checkpoint-dir", str(tmp / "ckpt"), "--arch", "tiny_cnn", "--epochs", "1",
        "--batch-size", "8", "--image-size", "32", "--num-workers", "0", *extra,
    ]  # fmt: skip


def test_a_bad_image_is_reported_by_path_and_skipped(dataset: Path, tmp_path: Path) -> None:
    broken = dataset / "valid" / "003.Airedale_terrier" / "empty.jpg"
    broken.write_bytes(b"")
    lines: list[str] = []
    result = train.main(
        train.parse_args(_tiny_args(dataset, tmp_path), environ={}), train.Hooks(log=lines.append)
    )
    warnings = [line for line in lines if "skipping unreadable image" in line]
    assert len(warnings) == 1 and str(broken) in warnings[0]  # once, not once per epoch
    assert result.metrics["epochs_run"] == 1


def test_a_bad_image_stops_the_run_with_fail(dataset: Path, tmp_path: Path) -> None:
    broken = dataset / "train" / "001.Affenpinscher" / "truncated.jpg"
    good = next((dataset / "train" / "001.Affenpinscher").glob("*.jpg")).read_bytes()
    broken.write_bytes(good[: len(good) // 3])
    args = train.parse_args(_tiny_args(dataset, tmp_path, "--bad-images", "fail"), environ={})
    with pytest.raises(DatasetError) as err:
        train.main(args, train.Hooks(log=lambda _line: None))
    assert str(broken) in err.value.message
