"""Metric lines and the SageMaker MetricDefinitions regexes agree; params/metrics stay torch-free."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from dogclf.config import TrainingSection
from dogclf.model.hyperparameters import ENTRY_MODULE, hyperparameters_from_config
from dogclf.model.metrics import (
    EPOCH_LINE,
    METRIC_DEFINITIONS,
    METRIC_NAMES,
    format_metric,
    parse_metrics,
)


def test_definitions_cover_every_metric_in_sagemaker_shape() -> None:
    assert [d["Name"] for d in METRIC_DEFINITIONS] == list(METRIC_NAMES)
    for definition in METRIC_DEFINITIONS:
        assert set(definition) == {"Name", "Regex"}
        assert re.compile(definition["Regex"]).groups == 1  # SageMaker reads group 1


@pytest.mark.parametrize("value", [0.0, 1.0, 0.8123, 1e-9, 12345.678, 3])
def test_every_formatted_value_is_parsed_back(value: float) -> None:
    for name in METRIC_NAMES:
        line = format_metric(name, value)
        assert line.startswith(f"{name}=") and line.endswith(";")
        assert parse_metrics(line) == {name: [pytest.approx(value, abs=1e-6)]}


def test_names_do_not_shadow_each_other() -> None:
    text = "\n".join(format_metric(n, i / 10) for i, n in enumerate(METRIC_NAMES))
    parsed = parse_metrics(text)
    assert {n: v[0] for n, v in parsed.items()} == {
        n: pytest.approx(i / 10) for i, n in enumerate(METRIC_NAMES)
    }


def test_parse_keeps_every_epoch_in_order_and_skips_other_lines() -> None:
    log = "\n".join(
        [
            "epoch 1/2 done in 1.0 s (10.0 train img/s, loader wait 1%), lr 0.001, best epoch 1",
            format_metric("valid_accuracy", 0.5),
            "some other line valid_accuracy 0.99",
            format_metric("valid_accuracy", 0.75),
        ]
    )
    assert parse_metrics(log) == {"valid_accuracy": [0.5, 0.75]}
    assert EPOCH_LINE.match(log)["epochs"] == "2"  # type: ignore[index]


def test_non_finite_values_are_printed_but_not_parsed() -> None:
    assert format_metric("train_loss", float("nan")) == "train_loss=nan;"
    assert parse_metrics("train_loss=nan;") == {}
    with pytest.raises(ValueError, match="unknown metric"):
        format_metric("nope", 1.0)


def test_hyperparameters_are_strings_named_like_the_entry_point_options() -> None:
    hps = hyperparameters_from_config(TrainingSection(epochs=3, batch_size=32, lr=0.01))
    assert ENTRY_MODULE == "dogclf.training.train"
    assert hps["arch"] == "resnet50"
    assert hps["epochs"] == "3" and hps["batch-size"] == "32" and hps["lr"] == "0.01"
    assert hps["pretrained"] == "true" and hps["freeze-backbone"] == "true"
    assert "num-workers" not in hps  # unset: the host decides
    assert all(isinstance(v, str) for v in hps.values())
    assert "instance-type" not in hps and "spot" not in hps  # job settings, not training


def test_control_plane_modules_do_not_import_torch() -> None:
    probe = (
        "import sys, dogclf.model.metrics, dogclf.model.hyperparameters; "
        "print([m for m in ('torch', 'torchvision') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
