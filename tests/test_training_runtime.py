"""The emulator's training runtime (what `dogclf demo` switches on): a submitted training job
really runs from its uploaded source bundle and channels, its output becomes the job's
CloudWatch log, its model lands in the emulated S3, and a failing job ends Failed."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from aws_support import BUCKET, Project, make_project

from dogclf.local.emulator import Emulator
from dogclf.local.job_executor import final_metrics
from dogclf.local.moto_ext import enable_training_runtime
from dogclf.training.synthetic import make_dataset


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path, aws, monkeypatch)
    enable_training_runtime(aws.url, str(tmp_path / "jobs"))
    return project


@pytest.mark.slow
def test_a_submitted_job_trains_from_its_bundle_and_reports_like_sagemaker(
    project: Project,
) -> None:
    assert project.run("upload", "data").exit_code == 0
    out = project.run_json("train-sagemaker", "--poll-interval", "0.05")
    assert out["status"] == "Completed"
    name = out["job"]
    sm = boto3.client("sagemaker")
    job = sm.describe_training_job(TrainingJobName=name)
    # The model is where SageMaker puts it, and it is a real artifact.
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == out["model_data"]
    assert out["model_data"].endswith(f"/models/{name}/output/model.tar.gz")
    key = out["model_data"].removeprefix(f"s3://{BUCKET}/")
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 1000
    # FinalMetricDataList comes from the job's own MetricDefinitions over its output.
    reported = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert set(reported) >= {"test_accuracy", "valid_loss"} and reported == out["metrics"]
    # The code that ran is the uploaded bundle, in the host's code/ as the container has it,
    # run by AWS's launcher.
    code = project.root / "jobs" / name / "algo-1" / "code"
    assert (code / "dogclf_train.py").is_file() and (code / "dogclf" / "training").is_dir()
    assert not (code / "dogclf" / "aws").exists()
    logs = boto3.client("logs")
    (stream,) = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
    )["logStreams"]
    assert stream["logStreamName"].startswith(f"{name}/algo-1-")
    events = logs.get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream["logStreamName"]
    )["events"]
    assert any(e["message"].startswith("test_accuracy=") for e in events)
    assert any("Reporting training SUCCESS" in e["message"] for e in events)


@pytest.mark.slow
def test_a_job_whose_program_fails_ends_failed_with_its_reason(project: Project) -> None:
    # Data synced by hand, bypassing upload's checks: valid/ lacks a breed train/ has.
    make_dataset(project.root / "odd", classes=3, per_class=6, size_range=(24, 32))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for path in sorted((project.root / "odd").rglob("*.jpg")):
        rel = path.relative_to(project.root / "odd").as_posix()
        if rel.startswith("valid/003."):
            continue
        s3.upload_file(str(path), BUCKET, f"dogclf/dev/data/{rel}")
    result = project.run("train-sagemaker", "--poll-interval", "0.05")
    assert result.exit_code == 1
    assert "failed: AlgorithmError" in result.stderr
    assert "valid" in result.stderr and "last log lines" in result.stderr
    sm = boto3.client("sagemaker")
    (summary,) = sm.list_training_jobs()["TrainingJobSummaries"]
    assert summary["TrainingJobStatus"] == "Failed"
    # output/failure as the FailureReason: the training core's own line, as SageMaker words it.
    reason = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])["FailureReason"]
    assert reason.startswith("AlgorithmError: ") and reason.endswith(", exit code: 1")
    assert "valid/ lacks 003." in reason and "\n" not in reason


def test_final_metrics_take_each_definitions_last_match() -> None:
    definitions = [
        {"Name": "valid_loss", "Regex": r"valid_loss=([0-9.]+);"},
        {"Name": "never", "Regex": r"never=([0-9.]+);"},
    ]
    lines = ["valid_loss=0.9;", "noise", "valid_loss=0.5;", "valid_loss=nan;"]
    assert final_metrics(definitions, lines) == {"valid_loss": 0.5}
