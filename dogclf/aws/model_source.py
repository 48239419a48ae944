"""Where a model comes from: a model.tar.gz, an extracted model dir, an s3:// URI, `latest`.

`open_model_dir(spec, cfg)` yields a local directory holding model.pt + labels.json, and
removes whatever it downloaded or extracted afterwards. boto3 is imported only for the S3
forms: a local model serves without AWS access.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dogclf.errors import DogclfError
from dogclf.model.artifact import extract_model_tar, local_model_path

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig


def is_remote(spec: str) -> bool:
    return spec == "latest" or spec.startswith("s3://")


@contextmanager
def open_model_dir(spec: str, cfg: DogclfConfig | None = None) -> Iterator[Path]:
    """A local model directory for `spec`; downloads/extractions are cleaned up after."""
    if not is_remote(spec):
        path = local_model_path(spec)
        if path.is_dir():
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="dogclf-model-") as tmp:
            yield extract_model_tar(path, Path(tmp))
        return
    if cfg is None:
        raise DogclfError(f"model {spec} needs the AWS settings from dogclf.toml")
    from dogclf.aws.artifacts import download_file, resolve_model_uri
    from dogclf.aws.session import AwsContext

    ctx = AwsContext.from_config(cfg)
    uri = resolve_model_uri(ctx, cfg, spec)
    with tempfile.TemporaryDirectory(prefix="dogclf-model-") as tmp:
        tar = download_file(ctx, uri, Path(tmp) / "model.tar.gz")
        yield extract_model_tar(tar, Path(tmp) / "model")
