"""`dogclf train-ec2` end to end: S3 data on the moto server, real training, upload, pointer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dogclf.aws.session import AwsContext
from dogclf.cli import app
from dogclf.local.emulator import Emulator
from dogclf.training.synthetic import make_dataset

pytestmark = pytest.mark.slow
runner = CliRunner()
BUCKET = "dogclf-train-ec2-test"
CONFIG = f"""
[aws]
bucket = "{BUCKET}"
region = "us-east-1"

[training]
arch = "tiny_cnn"
pretrained = false
freeze_backbone = false
epochs = 2
batch_size = 8
lr = 0.01
image_size = 32
num_workers = 0
"""


@pytest.fixture
def project(workdir: Path) -> Path:
    (workdir / "dogclf.toml").write_text(CONFIG)
    make_dataset(workdir / "data", classes=3, per_class=8, size_range=(40, 60), seed=2)
    return workdir


def upload_dataset(root: Path) -> int:
    """Put the dataset where `dogclf upload` puts it (plain boto3: not the code under test)."""
    s3 = AwsContext().client("s3")
    s3.create_bucket(Bucket=BUCKET)
    files = [p for p in (root / "data").rglob("*.jpg")]
    for path in files:
        key = "dogclf/dev/data/" + path.relative_to(root / "data").as_posix()
        s3.upload_file(str(path), BUCKET, key)
    return len(files)


def test_train_ec2_from_s3_uploads_the_model_and_moves_latest(aws: Emulator, project: Path) -> None:
    count = upload_dataset(project)
    result = runner.invoke(app, ["train-ec2", "--run-name", "r1", "--workdir", "work", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    uri = f"s3://{BUCKET}/dogclf/dev/models/r1/output/model.tar.gz"
    assert out["model_data"] == uri and out["epochs_run"] == 2
    assert 0.0 <= out["test_accuracy"] <= 1.0
    assert "download 24 files" in result.stderr and "epoch 2/2" in result.stderr
    downloaded = list((project / "work" / "data").rglob("*.jpg"))
    assert len(downloaded) == count == 24

    s3 = AwsContext().client("s3")
    head = s3.head_object(Bucket=BUCKET, Key="dogclf/dev/models/r1/output/model.tar.gz")
    assert (
        head["ContentLength"] == (project / "work" / "runs" / "r1" / "model.tar.gz").stat().st_size
    )
    latest = json.loads(
        s3.get_object(Bucket=BUCKET, Key="dogclf/dev/models/latest.json")["Body"].read()
    )
    assert latest["model_data"] == uri and latest["source"] == "train-ec2:r1"
    assert latest["metrics"]["epochs_run"] == 2

    # The same command again: everything is there, so the plan is all no-ops.
    again = runner.invoke(app, ["train-ec2", "--run-name", "r1", "--workdir", "work", "--json"])
    assert again.exit_code == 0, again.output
    assert "0 to create, 0 to update, 0 to delete, 4 unchanged" in again.stderr
    assert json.loads(again.stdout)["model_data"] == uri


def test_dry_run_plans_and_changes_nothing(aws: Emulator, project: Path) -> None:
    upload_dataset(project)
    result = runner.invoke(
        app, ["train-ec2", "--run-name", "dry", "--workdir", "work", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "download 24 files" in result.stderr and "upload model.tar.gz" in result.stderr
    assert "point latest at run dry" in result.stderr
    assert not (project / "work" / "runs").exists() and not (project / "work" / "data").exists()
    keys = AwsContext().client("s3").list_objects_v2(Bucket=BUCKET, Prefix="dogclf/dev/models")
    assert keys.get("KeyCount", 0) == 0


def test_no_upload_trains_from_a_local_folder_without_aws(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    result = runner.invoke(
        app,
        [
            "train-ec2",
            "--data",
            "data",
            "--no-upload",
            "--run-name",
            "local",
            "--epochs",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model_data"] is None and out["epochs_run"] == 1
    assert Path(out["model_tar"]).is_file()
    assert (project / ".dogclf" / "runs" / "local" / "train.log").read_text().count(
        "epoch 1/1"
    ) == 1


def test_bad_overrides_name_the_field(project: Path) -> None:
    result = runner.invoke(app, ["train-ec2", "--no-upload", "--data", "data", "--lr", "0"])
    assert result.exit_code == 1
    assert "training.lr" in result.output and "Traceback" not in result.output
