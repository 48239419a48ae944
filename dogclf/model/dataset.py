"""The dogImages layout, one rule set for `upload`, the training loader and `predict DIR`.

`DATA_DIR/{train,valid,test}/<class folder>/**/<image>`: a class folder is any folder that
does not start with "."; its breed name is the folder name without a leading number and
separator (`001.Affenpinscher`, `1-Beagle`, `12_Pug` -> `Affenpinscher`, `Beagle`, `Pug`);
an image is a file with one of IMAGE_SUFFIXES (any case) with no "." at the start of its
name or of a folder between it and the class folder (`.ipynb_checkpoints/` is skipped).
Stdlib only: the deploy-only install checks datasets without torch.
"""

from __future__ import annotations

import re
from pathlib import Path

SPLITS = ("train", "valid", "test")
# The photo formats the decoder opens (model/preprocess.py FORMATS), by file name.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# The number a dogImages folder starts with, and its separator.
NUMBER_PREFIX = re.compile(r"^\d+[._-]")
# What a file starts with, per format: the check `upload` makes where Pillow is not installed.
SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
)


def breed_name(folder: str) -> str:
    """`001.Affenpinscher` -> `Affenpinscher` (a folder without a number keeps its name)."""
    return NUMBER_PREFIX.sub("", folder, count=1)


def is_numbered(folder: str) -> bool:
    """Whether the folder has the dogImages number (`NNN.`): without it labels sort by name."""
    return NUMBER_PREFIX.match(folder) is not None


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(path)


def visible_files(folder: Path) -> list[Path]:
    """Every file below `folder` with no hidden part in its path below it, sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if not any(part.startswith(".") for part in p.relative_to(folder).parts) and p.is_file()
    )


def has_image_signature(head: bytes) -> bool:
    """Whether the first bytes of a file are those of an accepted format."""
    webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return webp or head.startswith(SIGNATURES)


def class_folders(split_dir: Path) -> list[str]:
    """The class folders of one split, sorted: their order is the label order."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not is_hidden(p))


def image_files(folder: Path) -> list[Path]:
    """Every image below `folder` (recursively), sorted."""
    return [p for p in visible_files(folder) if is_image_name(p)]
