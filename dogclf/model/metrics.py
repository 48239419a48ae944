"""Metric lines the training core prints, and the regexes SageMaker reads them with.

NO TORCH HERE: the control plane imports this module (MetricDefinitions for training and
tuning jobs) on hosts without torch. The training core prints with `format_metric`, the
jobs parse with `METRIC_DEFINITIONS`, and the tests check that both agree.
"""

from __future__ import annotations

import math
import re

METRIC_NAMES: tuple[str, ...] = (
    "train_loss",
    "train_accuracy",
    "valid_loss",
    "valid_accuracy",
    "test_loss",
    "test_accuracy",
)

# A plain decimal or scientific number; SageMaker takes the first capture group. Kept to
# syntax every regex engine shares (no lookbehind): no metric name ends another one.
_NUMBER = r"([-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"


def metric_regex(name: str) -> str:
    return rf"{name}={_NUMBER};"


METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": metric_regex(name)} for name in METRIC_NAMES
]
_COMPILED = {d["Name"]: re.compile(d["Regex"]) for d in METRIC_DEFINITIONS}

# The progress line printed at the end of each epoch ("epoch 3/10 ..."); train-ec2 reads it
# from a torchrun subprocess to drive its progress bar.
EPOCH_LINE = re.compile(r"^epoch (?P<epoch>\d+)/(?P<epochs>\d+)\b")


def format_metric(name: str, value: float) -> str:
    """`valid_accuracy=0.812300;`: fixed-point so every value matches the regex."""
    if name not in _COMPILED:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")
    value = float(value)
    if not math.isfinite(value):
        # nan/inf would not match the regex; print it so a person sees it, unparsed.
        return f"{name}={value};"
    return f"{name}={value:.6f};"


def parse_metrics(text: str) -> dict[str, list[float]]:
    """Every value of every metric in `text`, in order, using METRIC_DEFINITIONS' regexes."""
    found: dict[str, list[float]] = {}
    for name, regex in _COMPILED.items():
        values = [float(m.group(1)) for m in regex.finditer(text)]
        if values:
            found[name] = values
    return found
