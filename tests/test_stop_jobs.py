"""Stopping jobs (issue 12, items 6 and 7): `dogclf stop`, the twin check of `--tune`, the
best trial's model checked before `latest` moves, and the emulator's StopTrainingJob
delivering SIGTERM to a job that really runs, whose model is then uploaded."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_support import BUCKET, ROLE, Project, resources, uploaded_project

from dogclf.aws.artifacts import read_latest
from dogclf.aws.session import AwsContext
from dogclf.config import load_config
from dogclf.local.emulator import Emulator
from dogclf.local.moto_ext import enable_training_runtime


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return uploaded_project(tmp_path, aws, monkeypatch)


def sm() -> Any:
    return boto3.client("sagemaker")


def start_tuning(project: Project) -> str:
    project.script("tuning-job", ["InProgress", "Completed"])
    out = project.run_json("train-sagemaker", "--tune", "--no-wait")
    return str(out["job"])


def trials(tuning_job: str) -> list[dict[str, Any]]:
    """The tuning job's training jobs, best objective first."""
    return list(
        sm().list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=tuning_job,
            SortBy="FinalObjectiveMetricValue",
            SortOrder="Descending",
        )["TrainingJobSummaries"]
    )


def delete_model(training_job: str) -> None:
    uri = sm().describe_training_job(TrainingJobName=training_job)["ModelArtifacts"][
        "S3ModelArtifacts"
    ]
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=uri.removeprefix(f"s3://{BUCKET}/"))


# ---------------------------------------------------------------- item 7: the --tune twin
def test_tune_rerun_follows_the_running_tuning_job(project: Project) -> None:
    project.script("tuning-job", ["InProgress"])
    first = project.run_json("train-sagemaker", "--tune", "--no-wait")
    again = project.run_json("train-sagemaker", "--tune", "--dry-run")
    assert again["plan"]["counts"]["create"] == 0
    (step,) = [s for s in again["plan"]["steps"] if s["resource"] == "tuning job"]
    assert step["action"] == "no-op" and step["name"] == first["job"]
    assert "already running" in step["message"]
    before = resources()
    second = project.run_json("train-sagemaker", "--tune", "--no-wait")
    assert second["job"] == first["job"] and resources() == before  # no 4 more trials


# ---------------------------------------------------------------- item 6: the best model
def test_tune_passes_over_a_best_trial_that_left_no_model(project: Project) -> None:
    name = start_tuning(project)
    ranked = trials(name)
    delete_model(ranked[0]["TrainingJobName"])  # stopped before it wrote a model
    out = project.run_json("train-sagemaker", "--tune", "--poll-interval", "0")
    assert out["tuning_job"] == name  # followed, not started again
    assert out["without_model"] == [ranked[0]["TrainingJobName"]]
    assert out["best_training_job"] == ranked[1]["TrainingJobName"]
    latest = read_latest(AwsContext(), load_config())
    assert latest is not None and latest.model_data == out["model_data"]
    key = out["model_data"].removeprefix(f"s3://{BUCKET}/")
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key=key)


def test_tune_fails_in_one_line_when_no_trial_left_a_model(project: Project) -> None:
    name = start_tuning(project)
    for trial in trials(name):
        delete_model(trial["TrainingJobName"])
    result = project.run("train-sagemaker", "--tune", "--poll-interval", "0")
    assert result.exit_code == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"tuning job {name}: no training job left a model.tar.gz" in error
    assert "Traceback" not in result.output
    assert read_latest(AwsContext(), load_config()) is None  # latest points at nothing new


# ---------------------------------------------------------------- item 7: dogclf stop
def test_stop_latest_dry_run_then_stop_then_noop(project: Project) -> None:
    project.script("training-job", ["InProgress"])
    name = project.run_json("train-sagemaker", "--no-wait")["job"]
    before = resources()
    plan = project.run_json("stop", "latest", "--dry-run")
    assert plan["dry_run"] is True and plan["job"] == name and plan["kind"] == "training job"
    assert [(s["action"], s["name"]) for s in plan["plan"]["steps"]] == [("delete", name)]
    assert resources() == before
    stopped = project.run_json("stop", "latest")
    assert stopped["job"] == name and stopped["status_before"] == "InProgress"
    assert stopped["status"] == "Stopped"
    assert sm().describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "Stopped"
    # Idempotent: the same job again, and `latest` with nothing running, are no-ops.
    again = project.run_json("stop", name)
    assert again["plan"]["counts"]["delete"] == 0 and again["status"] == "Stopped"
    nothing = project.run_json("stop", "latest")
    assert nothing["job"] is None and nothing["plan"]["counts"]["no-op"] == 1
    said = project.run("stop", name)
    assert said.exit_code == 0 and f"training job {name}: Stopped" in said.stdout


def test_stop_a_tuning_job_by_name(project: Project) -> None:
    project.script("tuning-job", ["InProgress"])
    name = project.run_json("train-sagemaker", "--tune", "--no-wait")["job"]
    out = project.run_json("stop", name)
    assert out["kind"] == "tuning job" and out["status"] == "Stopped"
    tuning = sm().describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert tuning["HyperParameterTuningJobStatus"] == "Stopped"


def test_stop_unknown_or_foreign_job_is_one_line(project: Project) -> None:
    missing = project.run("stop", "dogclf-dev-nope")
    assert missing.exit_code == 1
    (error,) = [line for line in missing.stderr.splitlines() if line.startswith("Error:")]
    assert "no training or tuning job named dogclf-dev-nope" in error
    sm().create_training_job(
        TrainingJobName="someone-else",
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/other"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        Tags=[{"Key": "dogclf:project", "Value": "other"}],
    )
    foreign = project.run("stop", "someone-else")
    assert foreign.exit_code == 1
    (error,) = [line for line in foreign.stderr.splitlines() if line.startswith("Error:")]
    assert "training job someone-else is not one of project 'dogclf', stage 'dev'" in error


# ---------------------------------------------------------------- item 6: SIGTERM, end to end
def log_lines(name: str) -> list[str]:
    logs = boto3.client("logs")
    group = "/aws/sagemaker/TrainingJobs"
    try:
        streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")
    except logs.exceptions.ResourceNotFoundException:
        return []
    lines: list[str] = []
    for stream in streams["logStreams"]:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])
        lines += [e["message"] for e in events["events"]]
    return lines


def wait_for(condition: Any) -> Any:
    """Poll until `condition()` is truthy (no time limit: the job's own max run ends it)."""
    while not (found := condition()):
        time.sleep(0.1)
    return found


@pytest.mark.slow
def test_stopping_a_running_job_sends_sigterm_and_uploads_its_model(
    project: Project, aws: Emulator
) -> None:
    enable_training_runtime(aws.url, str(project.root / "jobs"))
    # Many epochs: the job is still training when the stop arrives. A loader worker: the
    # stop must reach the program, not its DataLoader workers (they would die on SIGTERM and
    # crash the run before it saves).
    env = {"DOGCLF_TRAINING__EPOCHS": "500", "DOGCLF_TRAINING__PATIENCE": "500"}
    env["DOGCLF_TRAINING__NUM_WORKERS"] = "1"
    name = project.run_json("train-sagemaker", "--no-wait", env=env)["job"]
    wait_for(lambda: any("epoch 2/" in line for line in log_lines(name)))
    out = project.run_json("stop", name)
    assert out["status"] in ("Stopping", "Stopped")

    def stopped() -> dict[str, Any] | None:
        job: dict[str, Any] = sm().describe_training_job(TrainingJobName=name)
        return job if job["TrainingJobStatus"] == "Stopped" else None

    job = wait_for(stopped)
    uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=uri.removeprefix(f"s3://{BUCKET}/"))
    with tarfile.open(fileobj=io.BytesIO(body["Body"].read())) as tar:
        names = set(tar.getnames())
        metrics = json.load(tar.extractfile("metrics.json"))  # type: ignore[arg-type]
    # The training core saved its best model so far on SIGTERM (issue 12 item 6, h2-core).
    assert {"model.pt", "labels.json", "metrics.json"} <= names
    assert metrics["epochs_run"] < 500 and metrics["stopped_by_signal"] == "SIGTERM"
    lines = log_lines(name)
    assert not any("Traceback" in line for line in lines)
    # The launcher was spared the SIGTERM: it reported the program's own exit (0).
    assert any("Reporting training SUCCESS" in line for line in lines)
