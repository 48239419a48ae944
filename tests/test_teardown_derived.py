"""What teardown used to leave behind, against the moto server over HTTP: SageMaker's
endpoint log group, the project's streams in the account's training log group, spot
checkpoints (all derived, so removed without --data), and a versioned bucket, whose every
version and delete marker must go before DeleteBucket (issue #12, item 9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from aws_support import BUCKET, READ_ONLY, Project, make_project, put_model, record_operations

from dogclf.local.emulator import Emulator

ENDPOINT_GROUP = "/aws/sagemaker/Endpoints/dogclf-dev"
TRAINING_GROUP = "/aws/sagemaker/TrainingJobs"
CHECKPOINTS = "dogclf/dev/checkpoints/"
# Streams of other projects and stages in the shared group: same name prefix, not ours.
NOT_OURS = [
    "other-dev-20260101-000000/algo-1-1767225600",
    "dogclf-dev2-20260101-000000/algo-1-1767225600",
    "dogclf-dev-b-20260101-000000/algo-1-1767225600",
]


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(tmp_path, aws, monkeypatch)


def ok(project: Project, *args: str) -> Any:
    result = project.run(*args)
    assert result.exit_code == 0, result.output
    return result


def s3() -> Any:
    return boto3.client("s3")


def logs() -> Any:
    return boto3.client("logs")


def log_groups() -> list[str]:
    return [g["logGroupName"] for g in logs().describe_log_groups()["logGroups"]]


def streams(group: str) -> list[str]:
    found = logs().describe_log_streams(logGroupName=group)["logStreams"]
    return sorted(s["logStreamName"] for s in found)


def keys(prefix: str = "") -> list[str]:
    listed = s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def put_checkpoints(job: str) -> None:
    """What SageMaker uploads from /opt/ml/checkpoints of a spot job (the emulator's jobs
    run without spot, so the test writes them where job_shape's CheckpointConfig points)."""
    for name in ("checkpoint.pt", "checkpoint.json"):
        s3().put_object(Bucket=BUCKET, Key=f"{CHECKPOINTS}{job}/{name}", Body=b"x" * 1000)


def derived_stack(project: Project) -> str:
    """Data, an endpoint (SageMaker logs it), a finished training job with its log stream,
    spot checkpoints, and other projects' streams in the same group; the job's name."""
    ok(project, "upload", "data")
    ok(project, "deploy", "--model", put_model(project), "--poll-interval", "0")
    project.script("training-job", ["Completed"], log_lines=["epoch 1", "valid_accuracy=0.5;"])
    ok(project, "train-sagemaker", "--no-wait")
    jobs = boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    (job,) = [j["TrainingJobName"] for j in jobs]
    put_checkpoints(job)
    for name in NOT_OURS:
        logs().create_log_stream(logGroupName=TRAINING_GROUP, logStreamName=name)
    return str(job)


def by_kind(out: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for r in out["resources"]:
        found.setdefault(r["kind"], []).append(r)
    return found


def test_status_shows_the_endpoint_log_group_training_streams_and_checkpoints(
    project: Project,
) -> None:
    job = derived_stack(project)
    assert ENDPOINT_GROUP in log_groups()  # the emulator logs an endpoint as SageMaker does
    kinds = by_kind(project.run_json("status"))
    group = next(r for r in kinds["log group"] if r["name"] == ENDPOINT_GROUP)
    assert "MB stored, never expires" in group["details"]
    (ours,) = kinds["log streams"]
    assert ours["details"].startswith("1 streams of 1 training job(s)")
    (checkpoints,) = kinds["checkpoints"]
    assert checkpoints["name"] == f"s3://{BUCKET}/{CHECKPOINTS}"
    assert "2 objects, 0.0 MB" in checkpoints["details"]
    data = {r["name"] for r in kinds["s3 objects"]}
    assert f"s3://{BUCKET}/{CHECKPOINTS}" not in data  # a kind of its own, not "data"
    assert any(s.startswith(f"{job}/algo-1-") for s in streams(TRAINING_GROUP))


def test_teardown_removes_derived_things_keeps_data_and_other_projects_streams(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    derived_stack(project)
    data_before, models_before = keys("dogclf/dev/data/"), keys("dogclf/dev/models/")
    operations = record_operations(monkeypatch)
    plan = json.loads(ok(project, "teardown", "--dry-run", "--json").stdout)["plan"]
    assert operations and all(op.startswith(READ_ONLY) for op in operations), operations
    planned = [(s["resource"], s["name"]) for s in plan["steps"]]
    assert ("log group", ENDPOINT_GROUP) in planned
    assert ("log streams", f"{TRAINING_GROUP} (dogclf-dev jobs)") in planned
    assert ("s3 objects", f"s3://{BUCKET}/{CHECKPOINTS}") in planned
    order = [resource for resource, _ in planned]
    assert order.index("endpoint") < order.index("log group")  # it would log again

    out = project.run_json("teardown", "--yes")
    assert out["left"] == {"steps": [], "tagged": []}
    assert ENDPOINT_GROUP not in log_groups()
    assert streams(TRAINING_GROUP) == sorted(NOT_OURS)  # the shared group and others stay
    assert keys(CHECKPOINTS) == []
    assert keys("dogclf/dev/data/") == data_before and data_before
    assert keys("dogclf/dev/models/") == models_before and models_before
    again = ok(project, "teardown", "--yes")
    assert "nothing to delete" in again.stdout


def test_moto_refuses_to_delete_a_bucket_that_holds_only_old_versions(aws: Emulator) -> None:
    """The emulator models AWS here already: a delete marker does not empty a bucket."""
    s3().create_bucket(Bucket="versions-only")
    s3().put_bucket_versioning(
        Bucket="versions-only", VersioningConfiguration={"Status": "Enabled"}
    )
    s3().put_object(Bucket="versions-only", Key="a", Body=b"1")
    s3().delete_object(Bucket="versions-only", Key="a")
    assert s3().list_objects_v2(Bucket="versions-only").get("KeyCount") == 0
    with pytest.raises(botocore.exceptions.ClientError, match="BucketNotEmpty"):
        s3().delete_bucket(Bucket="versions-only")


def test_versioned_bucket_teardown_with_data_removes_every_version_and_the_bucket(
    project: Project,
) -> None:
    ok(project, "upload", "data")  # creates the bucket, tagged for this stage
    s3().put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    model = put_model(project).split("/", 3)[3]
    s3().put_object(Bucket=BUCKET, Key=model, Body=b"a newer model")  # two versions
    first = keys("dogclf/dev/data/")[0]
    s3().delete_object(Bucket=BUCKET, Key=first)  # a delete marker over the old version
    put_checkpoints("dogclf-dev-20260101-000000")
    put_checkpoints("dogclf-dev-20260101-000000")  # and old versions of them
    versions = s3().list_object_versions(Bucket=BUCKET)
    stored = len(versions.get("Versions", [])) + len(versions.get("DeleteMarkers", []))

    kinds = by_kind(project.run_json("status"))
    (row,) = kinds["s3 versions"]
    assert row["details"].startswith(f"versioned bucket: {stored - 4} versions and delete")
    assert "(2 old versions and delete markers)" in kinds["checkpoints"][0]["details"]

    plan = json.loads(ok(project, "teardown", "--data", "--dry-run", "--json").stdout)["plan"]
    assert [s["resource"] for s in plan["steps"]][-3:] == ["s3 objects", "s3 objects", "s3 bucket"]
    ok(project, "teardown", "--yes", "--data")
    assert BUCKET not in [b["Name"] for b in s3().list_buckets()["Buckets"]]
    ok(project, "teardown", "--yes", "--data")


def test_a_versioned_bucket_with_another_stages_old_versions_is_kept(project: Project) -> None:
    ok(project, "upload", "data")
    s3().put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3().put_object(Bucket=BUCKET, Key="dogclf/prod/keep.jpg", Body=b"x")
    s3().delete_object(Bucket=BUCKET, Key="dogclf/prod/keep.jpg")  # only versions left there
    ok(project, "teardown", "--yes", "--data")
    assert BUCKET in [b["Name"] for b in s3().list_buckets()["Buckets"]]
    left = s3().list_object_versions(Bucket=BUCKET)
    everything = left.get("Versions", []) + left.get("DeleteMarkers", [])
    assert {v["Key"] for v in everything} == {"dogclf/prod/keep.jpg"}
