"""Default images (issue 12, item 11): the newest images the SageMaker SDK lists that AWS still
patches, and `config validate` warns about a chosen image past its end of patch, offline."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dogclf.aws import images
from dogclf.cli import app
from dogclf.config import DogclfConfig, load_config

runner = CliRunner()
# The day the support table was read, and the day issue 12 was filed against: a fixed date,
# so these tests do not change their answer as time passes.
READ_ON = dt.date(2026, 12, 1)


def sdk_config(name: str) -> dict[str, Any]:
    text = resources.files("sagemaker.core").joinpath(f"image_uri_config/{name}").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def sdk_versions(scope: str) -> dict[str, str | None]:
    """minor version -> the image's Python, for every PyTorch 2.x image the SDK lists."""
    found: dict[str, str | None] = {}
    for name in ("pytorch.json", "pytorch-amzn2023.json"):
        table = sdk_config(name).get(scope, {}).get("versions", {})
        for version, spec in table.items():
            if version.startswith("2."):
                pys = spec.get("py_versions")
                found[images._minor(version)] = pys[-1] if pys else None
    return found


def test_table_was_read_on_the_date_the_tests_pin() -> None:
    assert images._support_file()["read_on"] == READ_ON.isoformat()
    assert "aws.github.io/deep-learning-containers" in images._support_file()["source"]


def test_defaults_are_the_newest_patched_images_the_sdk_lists() -> None:
    cfg = DogclfConfig()
    table = images.support_table("training")
    patched = [v for v in sdk_versions("training") if v in table and table[v].supported_on(READ_ON)]
    assert cfg.training.framework_version == max(patched, key=images._version) == "2.13"
    assert images.support_table("training")["2.13"].python == cfg.training.py_version
    # No PyTorch inference image after 2.6 exists; 2.6 stays the default (with a warning).
    assert max(sdk_versions("inference"), key=images._version) == "2.6"
    assert cfg.endpoint.framework_version == "2.6"
    assert images.newest_supported("inference", READ_ON) is None


def test_table_agrees_with_the_sdk_and_knows_all_but_the_newest() -> None:
    for scope in ("training", "inference"):
        listed, table = sdk_versions(scope), images.support_table(scope)  # type: ignore[arg-type]
        for version, python in listed.items():
            if version in table and python is not None:
                assert table[version].python == python, (scope, version)
        # 2.14 is in the SDK but not yet in the policy read: a warning says so. A new SDK or
        # policy shows up here: update dogclf/data/image_support.json.
        assert set(listed) - set(table) == ({"2.14"} if scope == "training" else set())


def test_defaults_on_the_issue_date_warn_only_about_the_inference_image() -> None:
    (warning,) = images.support_warnings(DogclfConfig(), READ_ON)
    assert warning.startswith("endpoint.framework_version 2.6: ")
    assert "2026-06-30" in warning and "endpoint.image_uri" in warning


def test_old_defaults_were_out_of_support_on_the_issue_date() -> None:
    cfg = DogclfConfig.model_validate({"training": {"framework_version": "2.8"}})
    (training, _) = images.support_warnings(cfg, READ_ON)
    assert "2026-08-06" in training and "use 2.13 (py312, patched until 2027-07-20)" in training


@pytest.mark.parametrize(
    ("section", "values", "phrase"),
    [
        ("training", {"framework_version": "2.14"}, "not in dogclf's support table"),
        ("training", {"framework_version": "2.10", "py_version": "py312"}, "has py313"),
        ("training", {"framework_version": "2.13.0"}, None),  # a patch version: its minor
        ("endpoint", {"image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}, None),
    ],
)
def test_warnings(section: str, values: dict[str, str], phrase: str | None) -> None:
    cfg = DogclfConfig.model_validate({section: values})
    found = [w for w in images.support_warnings(cfg, READ_ON) if w.startswith(section)]
    if phrase is None:
        assert found == []
    else:
        assert len(found) == 1 and phrase in found[0], found


def test_config_validate_warns_in_one_line_and_exits_0(workdir: Path) -> None:
    (workdir / "dogclf.toml").write_text('[training]\nframework_version = "2.8"\n')
    result = runner.invoke(app, ["config", "validate"])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "training.framework_version" in line]
    assert len(warned) == 1 and warned[0].startswith("Warning: ")
    assert "2.8: AWS stopped patching the PyTorch training image on 2026-08-06" in warned[0]
    assert result.stdout == ""


def test_default_images_still_resolve(workdir: Path) -> None:
    cfg = load_config(environ={})
    gpu = images.training_image(cfg, "us-east-1")
    assert (
        gpu == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch:2.13-cu133-amzn2023-sagemaker"
    )
    cpu = cfg.model_copy(
        update={"training": cfg.training.model_copy(update={"instance_type": "ml.m5.xlarge"})}
    )
    assert images.training_image(cpu, "us-east-1").endswith("/pytorch:2.13-cpu-amzn2023-sagemaker")
    assert images.inference_image(cfg, "us-east-1").endswith("/pytorch-inference:2.6-cpu-py312")
