"""The model directory and `model.tar.gz` (the SageMaker PyTorch layout, see
docs/architecture.md "The model artifact"): weights, labels, metrics and the serving code,
so the PyTorch inference container (or `dogclf serve`) can load it as is."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

MODEL_FORMAT_VERSION = 1
_PACKAGE = Path(__file__).resolve().parents[1]  # dogclf/
# code/<name> <- dogclf/<source>; inference.py is optional until serving ships it.
CODE_FILES = {
    "inference.py": _PACKAGE / "serving" / "inference.py",
    "preprocess.py": _PACKAGE / "serving" / "preprocess.py",
    "models.py": _PACKAGE / "training" / "models.py",
}
REQUIREMENTS = (
    "# torch, torchvision and Pillow come with the SageMaker PyTorch inference container;\n"
    "# code/*.py needs nothing else, so the endpoint installs nothing at start-up.\n"
)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain network inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def write_model_dir(
    model_dir: Path,
    *,
    model: nn.Module,
    arch: str,
    num_classes: int,
    image_size: int,
    labels: list[str],
    metrics: dict[str, Any],
) -> Path:
    """model.pt, labels.json, metrics.json and code/ into `model_dir` (created if needed)."""
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for {num_classes} classes")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    torch.save(
        {
            "format_version": MODEL_FORMAT_VERSION,
            "arch": arch,
            "num_classes": num_classes,
            "image_size": image_size,
            "state_dict": state_dict,
        },
        model_dir / "model.pt",
    )
    (model_dir / "labels.json").write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    (model_dir / "metrics.json").write_text(
        json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8"
    )
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    for name, source in CODE_FILES.items():
        if source.is_file():
            shutil.copyfile(source, code / name)
    (code / "requirements.txt").write_text(REQUIREMENTS, encoding="utf-8")
    return model_dir


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
