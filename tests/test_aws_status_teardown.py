"""`dogclf status` and `dogclf teardown` against the moto server over HTTP: every kind of
resource with its state and hourly cost, then deleting all of it (checked by listing every
service), safely twice, never touching another stage or project."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_support import (
    BUCKET,
    READ_ONLY,
    Project,
    make_project,
    put_model,
    record_operations,
    resources,
)

from dogclf.aws.artifacts import LatestModel, write_latest
from dogclf.aws.session import AwsContext
from dogclf.config import load_config
from dogclf.local.emulator import Emulator

PRICE_TABLE = json.loads(
    (Path(__file__).resolve().parent.parent / "dogclf/data/prices.json").read_text()
)
PRICES = PRICE_TABLE["sagemaker"]["us-east-1"]
# 1 pre-warmed environment x 256 MB (the default) on arm64 (the default), per hour.
PROVISIONED_HOURLY = (
    PRICE_TABLE["lambda"]["us-east-1"]["provisioned_concurrency_gb_second"]["arm64"] * 3600 / 4
)
EXTRA = """
[endpoint]
initial_instance_count = 2

[lambda]
provisioned_concurrency = 1
function_url = true
"""
PROD = {"DOGCLF_STAGE": "prod"}
OTHER = {"DOGCLF_PROJECT": "other"}


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path, aws, monkeypatch)
    with (tmp_path / "dogclf.toml").open("a") as handle:
        handle.write(EXTRA)
    return project


def ok(project: Project, *args: str, env: dict[str, str] | None = None) -> None:
    result = project.run(*args, env=env)
    assert result.exit_code == 0, result.output


def serve_stack(project: Project, env: dict[str, str] | None = None) -> None:
    """Model, endpoint, auto-scaling and the Lambda in front, for one project/stage."""
    stage = (env or {}).get("DOGCLF_STAGE", "dev")
    uri = put_model(project, "models/manual/model.tar.gz").replace("/dev/", f"/{stage}/")
    boto3.client("s3").put_object(Bucket=BUCKET, Key=uri.split("/", 3)[3], Body=b"model")
    ok(project, "deploy", "--model", uri, "--poll-interval", "0", env=env)
    ok(project, "scale", env=env)
    ok(project, "lambda-deploy", env=env)


def full_stack(project: Project) -> None:
    """Every kind status knows: data, latest model, jobs in flight, endpoint, scaling,
    Lambda (with provisioned concurrency)."""
    ok(project, "upload", "data")
    serve_stack(project)
    ctx, cfg = AwsContext(), load_config()
    write_latest(
        ctx, cfg, LatestModel(put_model(project), "train-ec2", metrics={"test_accuracy": 0.8})
    )
    project.script("training-job", ["InProgress"])
    ok(project, "train-sagemaker", "--no-wait")
    project.script("tuning-job", ["InProgress"])
    ok(project, "train-sagemaker", "--tune", "--no-wait")


def status(project: Project, env: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = project.run_json("status", env=env)
    return out


def by_kind(out: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for r in out["resources"]:
        found.setdefault(r["kind"], []).append(r)
    return found


def everything() -> dict[str, Any]:
    """resources() plus what it does not list: log groups and the tag index."""
    tagged = boto3.client("resourcegroupstaggingapi").get_resources()["ResourceTagMappingList"]
    return {
        **resources(),
        "log_groups": [
            g["logGroupName"] for g in boto3.client("logs").describe_log_groups()["logGroups"]
        ],
        "tagged": sorted(t["ResourceARN"] for t in tagged),
    }


def test_status_lists_every_kind_with_state_and_cost_per_hour(project: Project) -> None:
    full_stack(project)
    out = status(project)
    kinds = by_kind(out)
    assert set(kinds) == {
        "s3 bucket",
        "s3 objects",
        "latest model",
        "training job",
        "tuning job",
        "endpoint",
        "endpoint config",
        "sagemaker model",
        "scalable target",
        "scaling policy",
        "lambda function",
        "provisioned concurrency",
        "iam role",
        "log group",  # SageMaker's for the endpoint (its instances log once started)
    }
    assert "/aws/sagemaker/Endpoints/dogclf-dev" in {r["name"] for r in kinds["log group"]}
    (endpoint,) = kinds["endpoint"]
    assert endpoint["state"] == "InService" and "AllTraffic: 2 x ml.m5.large" in endpoint["details"]
    assert endpoint["running"] and endpoint["hourly_cost"] == pytest.approx(
        2 * PRICES["hosting"]["ml.m5.large"]
    )
    (job,) = kinds["training job"]
    assert job["state"].startswith("InProgress")
    assert job["hourly_cost"] == pytest.approx(PRICES["training"]["ml.m5.large"])
    assert kinds["tuning job"][0]["state"] == "InProgress"
    (target,) = kinds["scalable target"]
    assert target["details"] == "1..3 instances"
    (function,) = kinds["lambda function"]
    assert function["name"] == "dogclf-dev-predict" and "alias live" in function["details"]
    (provisioned,) = kinds["provisioned concurrency"]
    assert provisioned["running"]
    assert provisioned["hourly_cost"] == pytest.approx(PROVISIONED_HOURLY)
    assert kinds["iam role"][0]["name"] == "dogclf-dev-lambda-role"
    assert "test_accuracy=0.8" in kinds["latest model"][0]["details"]
    data = {r["name"] for r in kinds["s3 objects"]}
    assert f"s3://{BUCKET}/dogclf/dev/data/" in data
    cost = out["hourly_cost"]
    assert cost["known_usd"] == pytest.approx(
        2 * PRICES["hosting"]["ml.m5.large"]
        + PRICES["training"]["ml.m5.large"]
        + PROVISIONED_HOURLY,
        abs=1e-4,
    )
    assert cost["unknown"] == []
    assert out["prices"]["source"] and out["prices"]["as_of"]


def test_an_instance_type_without_a_price_reads_unknown(project: Project) -> None:
    env = {"DOGCLF_ENDPOINT__INSTANCE_TYPE": "ml.r5.large"}
    assert "ml.r5.large" not in PRICES["hosting"]
    ok(project, "deploy", "--model", put_model(project), "--poll-interval", "0", env=env)
    out = status(project)
    (endpoint,) = by_kind(out)["endpoint"]
    assert endpoint["running"] and endpoint["hourly_cost"] is None
    assert out["hourly_cost"] == {"known_usd": 0.0, "unknown": ["endpoint dogclf-dev"]}
    table = project.run("status")
    assert table.exit_code == 0
    row = next(line for line in table.stdout.splitlines() if line.lstrip().startswith("endpoint "))
    assert row.rstrip().endswith("unknown")
    assert "unknown for 1 (endpoint dogclf-dev: no price in the table)" in table.stdout


def test_status_of_an_empty_project_says_so(project: Project) -> None:
    result = project.run("status")
    assert result.exit_code == 0, result.output
    assert "s3 bucket" in result.stdout and "missing" in result.stdout
    assert "running cost: $0.000/hour" in result.stdout


def test_teardown_leaves_nothing_and_a_second_one_is_a_no_op(project: Project) -> None:
    full_stack(project)
    out = project.run_json("teardown", "--yes")
    deleted = [(s["action"], s["resource"]) for s in out["deleted"]]
    order = [resource for _, resource in deleted]
    # dependency order: scaling, then the Lambda, then endpoint, configs, models
    assert order.index("scalable target") < order.index("lambda function")
    assert order.index("lambda function") < order.index("iam role") < order.index("endpoint")
    assert order.index("endpoint") < order.index("endpoint config") < order.index("sagemaker model")
    assert out["left"] == {"steps": [], "tagged": []}

    after = everything()
    for service in ("models", "configs", "endpoints", "targets", "policies", "functions", "roles"):
        assert after[service] == [], service
    assert after["log_groups"] == []
    # Finished jobs stay as SageMaker's history (they cost nothing and cannot be deleted);
    # the ones in flight were stopped.
    assert {status for _, status in after["training"]} <= {"Completed", "Stopped"}
    assert all(s == "Stopped" for _, s in after["tuning"])
    kept = (":training-job/", ":hyper-parameter-tuning-job/", f"arn:aws:s3:::{BUCKET}")
    assert all(any(k in a for k in kept) for a in after["tagged"]), after["tagged"]
    assert after["s3"][BUCKET], "without --data the data stays"

    again = project.run("teardown", "--yes")
    assert again.exit_code == 0, again.output
    assert "dogclf/dev: nothing to delete" in again.stdout
    assert everything() == after


def test_teardown_with_data_removes_the_objects_and_the_bucket_it_made(project: Project) -> None:
    ok(project, "upload", "data")
    serve_stack(project)
    plan = json.loads(project.run("teardown", "--data", "--dry-run", "--json").stdout)["plan"]
    resources_planned = [s["resource"] for s in plan["steps"]]
    assert resources_planned[-2:] == ["s3 objects", "s3 bucket"]
    ok(project, "teardown", "--yes", "--data")
    assert boto3.client("s3").list_buckets()["Buckets"] == []
    assert everything()["tagged"] == []
    ok(project, "teardown", "--yes", "--data")


def test_without_yes_off_a_terminal_teardown_refuses_and_deletes_nothing(
    project: Project,
) -> None:
    serve_stack(project)
    before = everything()
    result = project.run("teardown")  # CliRunner's stdin is not a terminal
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "stdin is not a terminal" in errors[0]
    assert "pass --yes" in result.stderr and "Traceback" not in result.output
    assert everything() == before


def test_dry_run_only_reads(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AWS operation the dry run sends is recorded (botocore's before-call event)."""
    ok(project, "upload", "data")
    serve_stack(project)
    before = everything()
    operations = record_operations(monkeypatch)
    result = project.run("teardown", "--data", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run: nothing was changed" in result.stderr
    assert operations and all(op.startswith(READ_ONLY) for op in operations), operations
    assert everything() == before


def test_other_stages_and_projects_are_untouched(project: Project) -> None:
    serve_stack(project, PROD)
    serve_stack(project, OTHER)
    boto3.client("s3").put_object(Bucket=BUCKET, Key="dogclf/prod/data/keep.jpg", Body=b"x")
    serve_stack(project)
    ok(project, "teardown", "--yes", "--data")

    after = everything()
    endpoints = {name for name, _ in after["endpoints"]}
    assert endpoints == {"dogclf-prod", "other-dev"}
    assert {m.rsplit("-model-", 1)[0] for m in after["models"]} == {"dogclf-prod", "other-dev"}
    assert {c.rsplit("-cfg-", 1)[0] for c in after["configs"]} == {"dogclf-prod", "other-dev"}
    assert {t["ResourceId"] for t in after["targets"]} == {
        "endpoint/dogclf-prod/variant/AllTraffic",
        "endpoint/other-dev/variant/AllTraffic",
    }
    assert len(after["policies"]) == 2
    assert sorted(after["functions"]) == ["dogclf-prod-predict", "other-dev-predict"]
    assert sorted(after["roles"]) == ["dogclf-prod-lambda-role", "other-dev-lambda-role"]
    keys = {key for key, _ in after["s3"][BUCKET]}
    assert "dogclf/prod/data/keep.jpg" in keys
    assert not any(k.startswith("dogclf/dev/") for k in keys)
    # The other stage still reads as whole.
    prod = by_kind(status(project, PROD))
    assert prod["endpoint"][0]["state"] == "InService" and "lambda function" in prod
