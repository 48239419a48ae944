"""The networks dogclf can build, by name.

STANDALONE FILE, torch-free: `config.py` validates `training.arch` with it (so `--help` and
a deploy-only install never import torch), and it is copied into model.tar.gz as
`code/archs.py` beside `code/network.py`.
"""

from __future__ import annotations

TORCHVISION_ARCHS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "efficientnet_b0",
    "efficientnet_b1",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "convnext_tiny",
)
# tiny_cnn: a few conv blocks that learn the generated test datasets in seconds on a CPU.
ARCHS = (*TORCHVISION_ARCHS, "tiny_cnn")
