"""The feature cache's layout on disk and in S3: one rule set for the training core, which
writes and reads caches (dogclf/training/feature_cache.py), and for aws/, which copies the
complete ones a job left to the stage prefix (dogclf/aws/feature_cache_store.py).

    <checkpoint folder>/feature-cache/<key>/train.pt valid.pt test.pt manifest.json

manifest.json is written last and lists each split file as [size in bytes, sha256]: a key
folder without it, or whose files do not match it, is not a cache (yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dogclf.model.dataset import SPLITS

FOLDER = "feature-cache"  # under the run's checkpoint folder (and the stage's checkpoints/)
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def split_file(split: str) -> str:
    return f"{split}.pt"


SPLIT_FILES = frozenset(split_file(split) for split in SPLITS)


def listed_sizes(manifest: Mapping[str, Any]) -> dict[str, int]:
    """File name -> size in bytes, as the manifest lists them (entry: [size, sha256])."""
    return {name: int(entry[0]) for name, entry in manifest.get("files", {}).items()}


def lists_every_split(manifest: Mapping[str, Any]) -> bool:
    """The manifest is this format's and names exactly the three split files."""
    return (
        manifest.get("format_version") == FORMAT_VERSION
        and set(manifest.get("files", {})) == SPLIT_FILES
    )


def is_hidden(name: str) -> bool:
    """Temp (`.tmp-*`) and set-aside (`.stale-*`) folders: never a cache to read or copy."""
    return name.startswith(".")
