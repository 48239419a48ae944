"""Container image URIs from the SageMaker SDK's own tables (imported lazily: ~1 s).

The SDK resolves the account, region, CPU/GPU flavour and Python tag offline. PyTorch
training images up to 2.10 are framework "pytorch"; later ones are "pytorch-amzn2023".
An explicit `training.image_uri` / `endpoint.image_uri` skips the SDK altogether.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dogclf.errors import ConfigError

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

AMZN2023_FROM = (2, 11)  # first PyTorch training version published only as pytorch-amzn2023


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(".")[:2])
    except ValueError:
        return (0,)


def _retrieve(
    framework: str, region: str, version: str, py_version: str, instance_type: str, scope: str
) -> str:
    from sagemaker.core import image_uris

    return str(
        image_uris.retrieve(
            framework=framework,
            region=region,
            version=version,
            py_version=py_version,
            instance_type=instance_type,
            image_scope=scope,
        )
    )


def training_image(cfg: DogclfConfig, region: str) -> str:
    t = cfg.training
    if t.image_uri:
        return t.image_uri
    framework = "pytorch-amzn2023" if _version(t.framework_version) >= AMZN2023_FROM else "pytorch"
    try:
        return _retrieve(
            framework, region, t.framework_version, t.py_version, t.instance_type, "training"
        )
    except ValueError as exc:
        raise ConfigError(
            f"no SageMaker PyTorch training image for training.framework_version "
            f"{t.framework_version!r} / training.py_version {t.py_version!r} in {region}: {exc}",
            "pick a published version (e.g. 2.8 with py312), or set training.image_uri",
        ) from None


def inference_image(cfg: DogclfConfig, region: str) -> str:
    e = cfg.endpoint
    if e.image_uri:
        return e.image_uri
    try:
        return _retrieve(
            "pytorch", region, e.framework_version, e.py_version, e.instance_type, "inference"
        )
    except ValueError as exc:
        raise ConfigError(
            f"no SageMaker PyTorch inference image for endpoint.framework_version "
            f"{e.framework_version!r} / endpoint.py_version {e.py_version!r} in {region}: {exc}",
            "inference images end at 2.6 (py312); or set endpoint.image_uri",
        ) from None
