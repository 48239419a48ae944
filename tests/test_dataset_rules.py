"""One dataset layout rule set (dogclf/model/dataset.py): `upload`'s pre-flight check, the
training data loader and `predict DIR` accept exactly the same files, on a dataset holding
every accepted suffix and class-folder form beside files and folders they must all skip."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from dogclf.model.dataset import IMAGE_SUFFIXES, SPLITS, breed_name
from dogclf.model.dataset_check import check_layout
from dogclf.predict.files import collect_images
from dogclf.training.data import scan_dataset, split_dirs

# Every folder form a class may take, and the breed name each gives.
FOLDERS = {
    "001.Affenpinscher": "Affenpinscher",
    "2-Beagle": "Beagle",
    "03_Pug": "Pug",
    "1.Border_collie": "Border_collie",
    "Chihuahua": "Chihuahua",  # no number: the folder name is the label
}
PIL_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF"}
PIL_FORMAT |= {".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def _image(suffix: str, shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 32), (shade, 255 - shade, 90)).save(buffer, PIL_FORMAT[suffix.lower()])
    return buffer.getvalue()


def _dataset(root: Path) -> set[Path]:
    """Write the dataset; return the files every reader must accept."""
    images: set[Path] = set()
    suffixes = [*sorted(IMAGE_SUFFIXES), ".JPG", ".Png"]  # any case
    for split in SPLITS:
        for n, folder in enumerate(FOLDERS):
            for i, suffix in enumerate(suffixes):
                sub = "nested/" if i % 3 == 0 else ""  # class folders may have subfolders
                path = root / split / folder / f"{sub}img{i}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_image(suffix, 20 * n + i))
                images.add(path)
            skipped = root / split / folder
            (skipped / "notes.txt").write_text("not an image")
            (skipped / ".hidden.jpg").write_bytes(_image(".jpg", 1))
            (skipped / ".ipynb_checkpoints").mkdir()
            (skipped / ".ipynb_checkpoints" / "img0-checkpoint.jpg").write_bytes(_image(".jpg", 2))
        (root / split / ".cache").mkdir()
        (root / split / ".cache" / "thumb.jpg").write_bytes(_image(".jpg", 3))
    return images


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[Path]]:
    root = tmp_path_factory.mktemp("rules") / "dogImages"
    return root, _dataset(root)


def test_upload_training_and_predict_accept_the_same_files(
    dataset: tuple[Path, set[Path]],
) -> None:
    root, expected = dataset
    report = check_layout(root)
    assert not report.errors, report.errors
    uploaded = set(report.files)

    data = scan_dataset(split_dirs(root))
    trained = {Path(path) for split in SPLITS for path, _ in data.samples[split]}

    predicted = set(collect_images([root]))

    assert uploaded == expected
    assert trained == expected
    assert predicted == expected


def test_every_folder_form_is_a_class_with_the_same_label_everywhere(
    dataset: tuple[Path, set[Path]],
) -> None:
    root, _ = dataset
    report = check_layout(root)
    data = scan_dataset(split_dirs(root))
    assert sorted(data.folders) == sorted(FOLDERS)
    assert sorted(data.labels) == sorted(FOLDERS.values())
    assert {breed_name(f) for f in report.classes} == set(FOLDERS.values())
    # Unnumbered folders are accepted, with a warning that names the folder.
    assert any("Chihuahua" in w and "NNN.Breed_name" in w for w in report.warnings)
    assert not any("Beagle" in w and "NNN" in w for w in report.warnings)


def test_upload_without_pillow_knows_every_accepted_format(
    dataset: tuple[Path, set[Path]],
) -> None:
    # The signature check (deploy-only installs have no Pillow) accepts each suffix's bytes.
    root, expected = dataset
    report = check_layout(root, decode_images=False)
    assert not report.errors, report.errors
    assert set(report.files) == expected
