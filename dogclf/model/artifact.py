"""The model directory and `model.tar.gz` (the SageMaker PyTorch layout, see
docs/architecture.md "The model artifact"): weights, labels, metrics and the serving code,
so the PyTorch inference container (or `dogclf serve`) can load it as is.

torch is imported only where weights are written: unpacking and checking a model is not.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogclf.errors import DogclfError

if TYPE_CHECKING:
    from torch import nn

_MODEL = Path(__file__).resolve().parent  # dogclf/model/
# code/<name> <- dogclf/model/<name>: the standalone files the container imports.
CODE_FILES = ("inference.py", "preprocess.py", "network.py", "archs.py", "quantize.py")
# No code/requirements.txt: the PyTorch inference image pip-installs one whenever it exists,
# even comment-only, at every start (sagemaker_pytorch_serving_container/torchserve.py
# start_torchserve -> sagemaker_inference/model_server.py _install_requirements). torch,
# torchvision and Pillow come with the image; code/*.py needs nothing else.
REQUIRED = ("model.pt", "labels.json")
MODEL_HINT = "pass a model.tar.gz, its extracted folder, an s3:// URI, or `latest`"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain network inside DistributedDataParallel / torch.compile wrappers."""
    from torch import nn

    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed over it once the block wrote it."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_model_dir(
    model_dir: Path,
    *,
    model: nn.Module,
    arch: str,
    num_classes: int,
    image_size: int,
    labels: list[str],
    metrics: dict[str, Any],
    int8_model: Any = None,
) -> Path:
    """model.pt, labels.json, metrics.json, precisions.json and code/ into `model_dir`
    (created if needed); model_int8.pt beside them when `int8_model` is given (usable)."""
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for {num_classes} classes")
    import torch

    from dogclf.model.inference import MODEL_FORMAT_VERSION

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    # Each file written beside itself and renamed: training rewrites the dir after every
    # better epoch, and a job killed mid-write must still leave a whole model behind.
    with _replacing(model_dir / "model.pt") as tmp:
        torch.save(
            {
                "format_version": MODEL_FORMAT_VERSION,
                "arch": arch,
                "num_classes": num_classes,
                "image_size": image_size,
                "state_dict": state_dict,
            },
            tmp,
        )
    with _replacing(model_dir / "labels.json") as tmp:
        tmp.write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    with _replacing(model_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    _write_precisions(model_dir, int8_model, metrics.get("int8"))
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    for name in CODE_FILES:
        shutil.copyfile(_MODEL / name, code / name)
    return model_dir


def _write_precisions(model_dir: Path, int8_model: Any, int8: dict[str, Any] | None) -> None:
    """precisions.json: what serving may load. int8 only with its file and a measured
    agreement at or above the threshold; a stale model_int8.pt from an earlier write goes."""
    from dogclf.model.quantize import INT8_FILE, PRECISIONS_FILE, save_int8

    usable = int8_model is not None and bool(int8 and int8.get("usable"))
    if usable:
        save_int8(int8_model, model_dir / INT8_FILE)
    else:
        (model_dir / INT8_FILE).unlink(missing_ok=True)
    doc = {"supported": ["fp32", "bf16", *(["int8"] if usable else [])], "int8": int8}
    with _replacing(model_dir / PRECISIONS_FILE) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")


def pack_model_dir(model_dir: Path, tar_path: Path) -> Path:
    """Tar+gzip the model dir's contents with the files at the archive root, as SageMaker
    packs /opt/ml/model. Written beside the target and renamed: never a half archive."""
    model_dir, tar_path = Path(model_dir), Path(tar_path)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tar_path.with_name(f".{tar_path.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz") as archive:
            for path in sorted(model_dir.rglob("*")):
                if path.is_file() and path.resolve() not in (tar_path.resolve(), tmp.resolve()):
                    archive.add(path, arcname=path.relative_to(model_dir).as_posix())
        os.replace(tmp, tar_path)
    finally:
        tmp.unlink(missing_ok=True)
    return tar_path


def check_model_dir(path: Path) -> Path:
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise DogclfError(
            f"{path} is not a model directory: {', '.join(missing)} missing", MODEL_HINT
        )
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
        raise DogclfError(f"model {spec} does not exist", MODEL_HINT)
    if path.is_dir():
        check_model_dir(path)
    return path


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
