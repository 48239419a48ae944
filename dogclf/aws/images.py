"""Container image URIs from the SageMaker SDK's own tables (`sagemaker.core.image_uris`, in
its `sagemaker-core` package, the only part of the SDK dogclf installs; imported lazily:
~1 s), and how long AWS patches each PyTorch image (dogclf/data/image_support.json, offline).

The SDK resolves the account, region, CPU/GPU flavour and Python tag offline. PyTorch
training images up to 2.10 are framework "pytorch"; later ones are "pytorch-amzn2023".
An explicit `training.image_uri` / `endpoint.image_uri` skips the SDK altogether.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from dogclf.errors import ConfigError

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

AMZN2023_FROM = (2, 11)  # first PyTorch training version published only as pytorch-amzn2023
Scope = Literal["training", "inference"]
BYO_HINT = (
    "build the `dogclf serve` image (docker build -t dogclf-serve .), push it to ECR and "
    "set endpoint.image_uri"
)


@dataclass(frozen=True)
class Support:
    """One PyTorch image version's support window, as AWS's DLC support policy lists it."""

    version: str
    ga: dt.date
    end_of_patch: dt.date
    python: str

    def supported_on(self, day: dt.date) -> bool:
        return self.ga <= day <= self.end_of_patch


@lru_cache(maxsize=1)
def _support_file() -> dict[str, Any]:
    text = resources.files("dogclf").joinpath("data/image_support.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def support_table(scope: Scope) -> dict[str, Support]:
    """Version ("2.13") -> its support window, for training or inference images."""
    rows = _support_file()["pytorch"][scope]
    return {
        version: Support(
            version,
            dt.date.fromisoformat(row["ga"]),
            dt.date.fromisoformat(row["end_of_patch"]),
            row["python"],
        )
        for version, row in rows.items()
    }


def newest_supported(scope: Scope, day: dt.date) -> Support | None:
    """The newest version in support on `day`, or None (inference images: none after 2.6)."""
    live = [s for s in support_table(scope).values() if s.supported_on(day)]
    return max(live, key=lambda s: _version(s.version), default=None)


def support_warnings(cfg: DogclfConfig, day: dt.date) -> list[str]:
    """One line per chosen PyTorch image that AWS no longer patches on `day`, or that the
    table does not know. An explicit image_uri is the user's own and is not judged."""
    warnings = []
    if not cfg.training.image_uri:
        t = cfg.training
        found = _version_warning("training", t.framework_version, t.py_version, day)
        warnings += [found] if found else []
    if not cfg.endpoint.image_uri:
        e = cfg.endpoint
        found = _version_warning("inference", e.framework_version, e.py_version, day)
        warnings += [found] if found else []
    return warnings


def _version_warning(scope: Scope, version: str, py_version: str, day: dt.date) -> str | None:
    section = "training" if scope == "training" else "endpoint"
    field = f"{section}.framework_version {version}"
    newest = newest_supported(scope, day)
    advice = (
        f"use {newest.version} ({newest.python}, patched until {newest.end_of_patch})"
        if newest
        else f"no PyTorch {scope} image is patched any more; {BYO_HINT}"
    )
    known = support_table(scope).get(_minor(version))
    if known is None:
        source = _support_file()["read_on"]
        return f"{field}: not in dogclf's support table (read {source}); {advice}"
    if day > known.end_of_patch:
        return f"{field}: AWS stopped patching the PyTorch {scope} image on {known.end_of_patch}; {advice}"
    if py_version != known.python:
        return f"{section}.py_version {py_version}: the {version} {scope} image has {known.python}"
    return None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


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
            "pick a published version (`dogclf config validate` names the newest patched one), "
            "or set training.image_uri",
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
            f"inference images end at 2.6 (py312); or {BYO_HINT}",
        ) from None
