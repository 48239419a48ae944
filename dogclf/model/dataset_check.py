"""The pre-flight check `upload` runs on a dogImages folder before a byte leaves the machine.

Layout: model/dataset.py, the same classes in each split. Stdlib only; Pillow (the `torch`
extra) decodes each image when installed, otherwise the file signatures are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dogclf.errors import DatasetError
from dogclf.model.dataset import (
    SPLITS,
    class_folders,
    has_image_signature,
    is_hidden,
    is_image_name,
    is_numbered,
    visible_files,
)

MAX_LISTED = 8  # problems of one kind shown before "... and N more"


@dataclass
class LayoutReport:
    root: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> images
    files: list[Path] = field(default_factory=list)  # what upload syncs
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    decoded: bool = False  # False: only file signatures were checked (no Pillow)

    @property
    def classes(self) -> list[str]:
        return sorted({c for per_class in self.counts.values() for c in per_class})

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    def summary(self) -> str:
        parts = [f"{split} {sum(c.values())}" for split, c in self.counts.items()]
        return f"{len(self.classes)} classes; images: " + ", ".join(parts)


def _listing(kind: str, items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{kind}: {shown}{more}"


def _signature_ok(path: Path) -> str | None:
    with path.open("rb") as fh:
        head = fh.read(12)
    return None if has_image_signature(head) else "not an image file of an accepted format"


def _decoder() -> Callable[[Path], str | None] | None:
    try:
        from PIL import Image
    except ImportError:
        return None

    def decode(path: Path) -> str | None:
        try:
            with Image.open(path) as image:
                image.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale, still every block
                image.load()
        except Exception as exc:  # Pillow raises many types for broken files
            return f"cannot decode ({type(exc).__name__}: {exc})"
        return None

    return decode


def check_layout(root: Path, *, decode_images: bool = True, workers: int = 8) -> LayoutReport:
    """Walk DATA_DIR and report everything wrong with it at once (not just the first)."""
    report = LayoutReport(root=root)
    if not root.is_dir():
        raise DatasetError(
            f"{root} is not a folder", "pass the dogImages folder (with train/ valid/ test/)"
        )
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        report.errors.append(f"missing split folder(s): {', '.join(missing)}")
    skipped: list[str] = []
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        per_class: dict[str, int] = {}
        classes = set(class_folders(folder))
        for entry in sorted(folder.iterdir()):
            if is_hidden(entry):
                continue
            if entry.name not in classes:
                skipped.append(str(entry.relative_to(root)))
                continue
            if not is_numbered(entry.name):
                report.warnings.append(
                    f"{split}/{entry.name}: class folders are usually NNN.Breed_name "
                    "(the label is the folder name)"
                )
            images = []
            for file in visible_files(entry):
                if is_image_name(file):
                    images.append(file)
                else:
                    skipped.append(str(file.relative_to(root)))
            per_class[entry.name] = len(images)
            report.files.extend(images)
            if not images:
                report.errors.append(f"{split}/{entry.name}: no images")
        report.counts[split] = per_class
    if skipped:
        report.warnings.append(_listing("not images, not uploaded", skipped))
    _compare_classes(report)
    _check_files(report, decode_images, workers)
    return report


def _compare_classes(report: LayoutReport) -> None:
    every = set(report.classes)
    for split, per_class in report.counts.items():
        if not per_class:
            report.errors.append(f"{split}/: no class folders")
            continue
        absent = sorted(every - set(per_class))
        if absent:
            report.errors.append(_listing(f"{split}/ lacks classes the other splits have", absent))


def _check_files(report: LayoutReport, decode_images: bool, workers: int) -> None:
    decode = _decoder() if decode_images else None
    report.decoded = decode is not None
    if decode_images and decode is None:
        report.warnings.append(
            "Pillow is not installed: checked file signatures only (pip install 'dogclf[torch]')"
        )
    check = decode or _signature_ok
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without the GIL
        results = list(pool.map(check, report.files))
    bad = [
        f"{path.relative_to(report.root)} ({why})"
        for path, why in zip(report.files, results, strict=True)
        if why
    ]
    if bad:
        report.errors.append(_listing(f"{len(bad)} unreadable image(s)", bad))
