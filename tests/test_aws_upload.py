"""`dogclf upload`: dataset check, bucket creation, parallel resumable sync (moto over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from aws_support import BUCKET, Project, make_project, resources

from dogclf.aws.s3_sync import PartSizes, local_etag, local_files, plan_sync, run_sync
from dogclf.aws.session import AwsContext
from dogclf.local.emulator import Emulator

PREFIX = "dogclf/dev/data/"


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(tmp_path, aws, monkeypatch)


def keys() -> list[str]:
    s3 = boto3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def n_images(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.jpg"))


def test_upload_twice_second_run_uploads_nothing(project: Project) -> None:
    first = project.run_json("upload", "data")
    assert first["uploaded"] == n_images(project.data) == len(keys())
    second = project.run_json("upload", "data")
    assert second["uploaded"] == 0 and second["unchanged"] == first["uploaded"]
    again = project.run("upload", "data", "--dry-run", "--json")
    plan = json.loads(again.stdout)["plan"]
    assert plan["counts"]["create"] == plan["counts"]["update"] == plan["counts"]["delete"] == 0


def test_created_bucket_is_private_encrypted_tls_only_and_tagged(project: Project) -> None:
    project.run_json("upload", "data")
    s3 = boto3.client("s3")
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    rule = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags["dogclf:project"] == "dogclf" and tags["dogclf:stage"] == "dev"


def test_changed_file_is_uploaded_again_by_checksum_not_size(project: Project) -> None:
    project.run_json("upload", "data")
    victim = sorted(project.data.rglob("*.jpg"))[0]
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF  # same size, different bytes
    victim.write_bytes(bytes(data))
    again = project.run_json("upload", "data", "--no-check-images")
    assert again["uploaded"] == 1


def test_interrupted_upload_resumes_with_only_the_rest(project: Project) -> None:
    """The first sync really stops after 5 files (a callback raises, as Ctrl-C would);
    the re-run through the CLI uploads exactly the files still missing."""
    ctx = AwsContext()
    ctx.client("s3").create_bucket(Bucket=BUCKET)
    paths = sorted(project.data.rglob("*.jpg"))
    files = local_files(project.data, paths, PREFIX)
    parts = PartSizes.from_mb(64)
    plan = plan_sync(ctx, files, BUCKET, PREFIX, parts=parts, workers=2)
    done: list[str] = []

    def interrupt(f: object) -> None:
        done.append(str(f))
        if len(done) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sync(ctx, plan, parts=parts, workers=2, on_uploaded=interrupt)
    partial = len(keys())
    assert 5 <= partial < len(paths)  # in-flight uploads may finish; queued ones never start
    rerun = project.run_json("upload", "data")
    assert rerun["uploaded"] == len(paths) - partial
    assert rerun["unchanged"] == partial
    assert len(keys()) == len(paths)


def test_delete_removes_objects_no_longer_local(project: Project) -> None:
    project.run_json("upload", "data")
    gone = sorted((project.data / "train").rglob("*.jpg"))[0]  # its class keeps 3 more
    gone.unlink()
    kept = project.run_json("upload", "data")
    assert kept["deleted"] == 0 and len(keys()) == n_images(project.data) + 1
    pruned = project.run_json("upload", "data", "--delete")
    assert pruned["deleted"] == 1 and len(keys()) == n_images(project.data)


def test_dry_run_changes_nothing(project: Project) -> None:
    before = resources()
    result = project.run("upload", "data", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "create" in result.stderr and "s3 bucket" in result.stderr
    assert resources() == before
    project.run_json("upload", "data")
    train = sorted((project.data / "train").rglob("*.jpg"))
    train[0].unlink()
    train[1].write_bytes(train[2].read_bytes())
    before = resources()
    plan = json.loads(project.run("upload", "data", "--delete", "--dry-run", "--json").stdout)
    assert plan["plan"]["counts"] == {"create": 1, "update": 0, "delete": 1, "no-op": 2}
    assert resources() == before


def test_missing_bucket_without_create_is_one_error(project: Project) -> None:
    result = project.run("upload", "data", env={"DOGCLF_AWS__CREATE_BUCKET": "false"})
    assert result.exit_code == 1
    assert "Error: bucket s3://dogclf-test-bucket does not exist" in result.stderr
    assert "--create-bucket" in result.stderr and "Traceback" not in result.output


def test_bad_layout_is_reported_all_at_once_before_any_upload(project: Project) -> None:
    (project.data / "valid" / "002.Afghan_hound").rename(project.data / "valid" / "x")
    bad = project.data / "test" / "001.Affenpinscher" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    result = project.run("upload", "data")
    assert result.exit_code == 1
    assert "valid/ lacks classes the other splits have: 002.Afghan_hound" in result.stderr
    assert "unreadable image" in result.stderr and "broken.jpg" in result.stderr
    assert "valid/x: class folders are usually NNN.Breed_name" in result.stderr
    assert boto3.client("s3").list_buckets()["Buckets"] == []  # nothing was sent


def test_missing_split_is_named(project: Project) -> None:
    import shutil

    shutil.rmtree(project.data / "test")
    result = project.run("upload", "data")
    assert result.exit_code == 1 and "missing split folder(s): test" in result.stderr


def test_multipart_etag_matches_what_s3_reports(aws: Emulator, tmp_path: Path) -> None:
    """A file above the threshold goes up in parts; the ETag we compute locally (MD5 of
    part MD5s) equals the one S3 lists, so the re-run skips it without downloading."""
    ctx = AwsContext()
    ctx.client("s3").create_bucket(Bucket=BUCKET)
    big = tmp_path / "train" / "001.A" / "big.jpg"
    big.parent.mkdir(parents=True)
    big.write_bytes(bytes(range(256)) * (13 * 1024 * 4))  # 13 MiB: 3 parts of 5 MiB
    parts = PartSizes.from_mb(5)
    files = local_files(tmp_path, [big], PREFIX)
    run_sync(ctx, plan_sync(ctx, files, BUCKET, PREFIX, parts=parts), parts=parts)
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"][0]["ETag"].strip('"')
    assert listed.endswith("-3")
    assert local_etag(big, big.stat().st_size, parts) == listed
    again = plan_sync(ctx, files, BUCKET, PREFIX, parts=parts)
    assert not again.to_upload and len(again.unchanged) == 1
