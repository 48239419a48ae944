"""Networks by name: torchvision classifiers with a new head, plus a test-sized CNN.

STANDALONE FILE: copied into model.tar.gz as `code/network.py` so `code/inference.py` can
rebuild the network inside the SageMaker container; stdlib, torch, torchvision and its sibling `archs` only.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

try:  # inside the package
    from dogclf.model.archs import ARCHS
except ImportError:  # inside the container: code/ is on sys.path, dogclf is not
    from archs import ARCHS  # type: ignore[no-redef]

# torch.hub downloads without a timeout: on a network that drops packets that would hang.
DOWNLOAD_TIMEOUT_S = 30.0


@contextlib.contextmanager
def _socket_timeout(seconds: float | None) -> Iterator[None]:
    if seconds is None:
        yield
        return
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights were asked for but could not be fetched (no network, no cache)."""


class TinyCNN(nn.Module):
    """A few conv blocks: learns the generated test datasets in seconds on a CPU."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, width * 2, width * 4):
            layers += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _replace_head(model: nn.Module, arch: str, num_classes: int) -> None:
    if arch.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)  # type: ignore[union-attr, arg-type]
    elif arch.startswith(("efficientnet", "mobilenet", "convnext")):
        classifier: Any = model.classifier
        classifier[-1] = nn.Linear(classifier[-1].in_features, num_classes)
    else:  # pragma: no cover - guarded by ARCHS
        raise ValueError(f"no head rule for {arch}")


def head_parameters(model: nn.Module, arch: str) -> list[nn.Parameter]:
    head = model.fc if arch.startswith(("resnet", "tiny")) else model.classifier  # type: ignore[union-attr]
    return list(head.parameters())  # type: ignore[union-attr]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware; without it bf16 is emulated and slower.

    Here because code/inference.py needs it inside the container too."""
    cpu: Any = torch.cpu  # private probes (torch >= 2.3), absent on some builds
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(cpu, name)() for name in probes if hasattr(cpu, name))
    except Exception:
        return False


def build_model(
    arch: str, num_classes: int, *, pretrained: bool = False, freeze_backbone: bool = False
) -> nn.Module:
    """The network for `arch` with a `num_classes` head.

    `pretrained` loads torchvision's ImageNet weights (downloaded once into the torch hub
    cache); without network access that fails at once with PretrainedWeightsError.
    `freeze_backbone` leaves only the new head trainable.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch == "tiny_cnn":
        model: nn.Module = TinyCNN(num_classes)
    else:
        import torchvision

        weights: Any = None
        if pretrained:
            weights = torchvision.models.get_model_weights(arch).DEFAULT
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S if pretrained else None):
                model = torchvision.models.get_model(arch, weights=weights)
        except (OSError, RuntimeError) as exc:  # URLError and socket timeouts are OSErrors
            raise PretrainedWeightsError(
                f"cannot load ImageNet weights for {arch} ({exc}); set pretrained = false, "
                "or pre-fill the torch hub cache (TORCH_HOME) on a machine with network"
            ) from None
        _replace_head(model, arch, num_classes)
    if freeze_backbone:
        for param in model.parameters():
            param.requires_grad = False
        for param in head_parameters(model, arch):
            param.requires_grad = True
    return model
