"""Helpers shared by tests/test_aws_*.py: a project folder and a CLI runner over the moto
server (the `aws` fixture in conftest.py points boto3 at it)."""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from typer.testing import CliRunner, Result

from dogclf.cli import app
from dogclf.local.emulator import Emulator

BUCKET = "dogclf-test-bucket"
ROLE = "arn:aws:iam::123456789012:role/dogclf-sagemaker"
CONFIG = f"""
[aws]
bucket = "{BUCKET}"
role_arn = "{ROLE}"
create_bucket = true

[data]
upload_workers = 4

[training]
arch = "tiny_cnn"
pretrained = false
freeze_backbone = false
epochs = 1
batch_size = 4
image_size = 32
num_workers = 0
instance_type = "ml.m5.large"

[hpo]
max_jobs = 4
max_parallel_jobs = 2
"""


@dataclass
class Project:
    root: Path
    emulator: Emulator
    runner: CliRunner

    @property
    def data(self) -> Path:
        return self.root / "data"

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """`dogclf ARGS` in-process; waits poll with no delay against the emulator."""
        return self.runner.invoke(app, list(args), env=env, catch_exceptions=False)

    def run_json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        result = self.run(*args, "--json", env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def client(self, service: str) -> Any:
        return boto3.client(service)

    def script(self, kind: str, statuses: list[str], **kwargs: Any) -> None:
        from dogclf.local.moto_ext import script_sagemaker

        script_sagemaker(self.emulator.url, kind, "dogclf-dev", statuses, **kwargs)


def make_project(tmp_path: Path, emulator: Emulator, monkeypatch: Any) -> Project:
    from dogclf.training.synthetic import make_dataset

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dogclf.toml").write_text(CONFIG)
    make_dataset(tmp_path / "data", classes=3, per_class=6, size_range=(24, 40))
    return Project(tmp_path, emulator, CliRunner())


def uploaded_project(tmp_path: Path, emulator: Emulator, monkeypatch: Any) -> Project:
    """make_project, with its dataset already in S3 through `dogclf upload`."""
    project = make_project(tmp_path, emulator, monkeypatch)
    assert project.run("upload", "data").exit_code == 0
    return project


def put_model(project: Project, key: str = "models/manual/model.tar.gz") -> str:
    """A stand-in model.tar.gz in S3 (deploy only passes its URI to SageMaker)."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"dogclf/dev/{key}", Body=b"not really a model")
    return f"s3://{BUCKET}/dogclf/dev/{key}"


def resources() -> dict[str, Any]:
    """What every service dogclf touches holds, listed with boto3: equal before and after a
    command means the command changed nothing."""
    s3, sm = boto3.client("s3"), boto3.client("sagemaker")
    aas = boto3.client("application-autoscaling")
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    return {
        "s3": {
            b: sorted(
                (o["Key"], o["ETag"]) for o in s3.list_objects_v2(Bucket=b).get("Contents", [])
            )
            for b in buckets
        },
        "models": sorted(m["ModelName"] for m in sm.list_models()["Models"]),
        "configs": sorted(
            c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]
        ),
        "endpoints": sorted(
            (e["EndpointName"], e["EndpointStatus"]) for e in sm.list_endpoints()["Endpoints"]
        ),
        "training": sorted(
            (j["TrainingJobName"], j["TrainingJobStatus"])
            for j in sm.list_training_jobs()["TrainingJobSummaries"]
        ),
        "tuning": sorted(
            (j["HyperParameterTuningJobName"], j["HyperParameterTuningJobStatus"])
            for j in sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
        ),
        "targets": aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"],
        "policies": aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"],
        "functions": [
            f["FunctionName"] for f in boto3.client("lambda").list_functions()["Functions"]
        ],
        "roles": [r["RoleName"] for r in boto3.client("iam").list_roles()["Roles"]],
    }


def enforce_iam(emulator: Emulator, on: bool) -> None:
    """moto's own IAM enforcement (POST /moto-api/reset-auth): 0 = from now on, inf = off."""
    req = urllib.request.Request(
        emulator.url + "/moto-api/reset-auth",
        data=b"0" if on else b"inf",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def env_without_aws() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def record_operations(monkeypatch: Any) -> list[str]:
    """The name of every AWS operation dogclf sends from now on (botocore's before-call
    event on each client AwsContext builds): a dry run must send only reads."""
    from dogclf.aws.session import AwsContext

    operations: list[str] = []
    original = AwsContext.client

    def recording_client(self: AwsContext, service: str, **config: Any) -> Any:
        client = original(self, service, **config)
        client.meta.events.register(
            "before-call", lambda model, **_: operations.append(model.name), unique_id="rec"
        )
        return client

    monkeypatch.setattr(AwsContext, "client", recording_client)
    return operations


READ_ONLY = ("Get", "List", "Describe", "Head")
