"""Where a model comes from: a model.tar.gz, an extracted model dir, an s3:// URI, `latest`.

`open_model_dir(spec, cfg)` yields a local directory holding model.pt + labels.json, and
removes whatever it downloaded or extracted afterwards.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dogclf.errors import DogclfError

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

REQUIRED = ("model.pt", "labels.json")
HINT = "pass a model.tar.gz, its extracted folder, an s3:// URI, or `latest`"


def is_remote(spec: str) -> bool:
    return spec == "latest" or spec.startswith("s3://")


def check_model_dir(path: Path) -> Path:
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise DogclfError(f"{path} is not a model directory: {', '.join(missing)} missing", HINT)
    return path


def extract_model_tar(tar_path: Path, dest: Path) -> Path:
    """Unpack model.tar.gz into dest, refusing links and paths outside dest.

    Read as a stream ("r|*"), so a pipe works as well as a file.
    """
    try:
        with tarfile.open(tar_path, "r|*") as archive:
            archive.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DogclfError(
            f"cannot unpack {tar_path}: {exc}",
            "it should be the model.tar.gz written by `dogclf train-*`",
        ) from None
    return check_model_dir(dest)


def local_model_path(spec: str) -> Path:
    """Check a local MODEL argument before anything slow starts."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise DogclfError(f"model {spec} does not exist", HINT)
    if path.is_dir():
        check_model_dir(path)
    return path


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
    # Only the S3 forms need boto3; a local model serves without AWS access.
    from dogclf.aws.artifacts import download_file, resolve_model_uri
    from dogclf.aws.session import AwsContext

    ctx = AwsContext.from_config(cfg)
    uri = resolve_model_uri(ctx, cfg, spec)
    with tempfile.TemporaryDirectory(prefix="dogclf-model-") as tmp:
        tar = download_file(ctx, uri, Path(tmp) / "model.tar.gz")
        yield extract_model_tar(tar, Path(tmp) / "model")


@contextmanager
def load_errors(spec: str) -> Iterator[None]:
    """A model that is there but does not load (a corrupt model.pt, labels that do not match
    the weights, another format version) becomes one error line naming it, not a traceback."""
    try:
        yield
    except DogclfError:
        raise
    except Exception as exc:  # torch.load and the network builder raise many kinds
        raise DogclfError(
            f"cannot load the model {spec}: {type(exc).__name__}: {exc}",
            "it should be the model.tar.gz written by `dogclf train-*` with this dogclf version",
        ) from None
