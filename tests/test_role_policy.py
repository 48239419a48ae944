"""The SageMaker execution role's policy (issue 12, item 12): the README's commands come from
dogclf/role_policy.py, and the policy lets SageMaker mirror checkpoint deletions to S3 while
granting writes and deletes nowhere else (least privilege)."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dogclf.config import DogclfConfig
from dogclf.config_doc import ROLE_BEGIN, ROLE_END, render_role_commands
from dogclf.role_policy import execution_role_policy

README = Path(__file__).resolve().parent.parent / "README.md"
BUCKET = "my-bucket"


def allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    """IAM's evaluation for these documents: Allow statements only, `*` spans `/` too."""
    for statement in policy["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if action in actions and any(fnmatch.fnmatchcase(resource, r) for r in resources):
            return True
    return False


def obj(key: str) -> str:
    return f"arn:aws:s3:::{BUCKET}/{key}"


@pytest.fixture(params=["*", "dev"])
def policy(request: pytest.FixtureRequest) -> dict[str, Any]:
    return execution_role_policy(BUCKET, "dogclf", stage=request.param)


def test_checkpoint_deletions_are_allowed(policy: dict[str, Any]) -> None:
    for key in ("dogclf/dev/checkpoints/job-1/checkpoint.pt", "dogclf/dev/checkpoints/t/a/b.pt"):
        assert allows(policy, "s3:DeleteObject", obj(key))
        assert allows(policy, "s3:PutObject", obj(key))
        assert allows(policy, "s3:GetObject", obj(key))  # a restarted spot job reads it back


@pytest.mark.parametrize(
    "key",
    [
        "dogclf/dev/data/train/001.Affenpinscher/a.jpg",
        "dogclf/dev/models/job-1/output/model.tar.gz",
        "dogclf/dev/models/latest.json",
        "dogclf/dev/code/abc/sourcedir.tar.gz",
        "other-project/dev/checkpoints/job-1/checkpoint.pt",
    ],
)
def test_nothing_else_can_be_deleted(policy: dict[str, Any], key: str) -> None:
    assert not allows(policy, "s3:DeleteObject", obj(key))


def test_writes_only_where_sagemaker_uploads(policy: dict[str, Any]) -> None:
    assert allows(policy, "s3:PutObject", obj("dogclf/dev/models/job-1/output/model.tar.gz"))
    assert not allows(policy, "s3:PutObject", obj("dogclf/dev/data/train/x/a.jpg"))
    assert not allows(policy, "s3:PutObject", obj("dogclf/dev/code/abc/sourcedir.tar.gz"))
    for key in ("data/train/x/a.jpg", "code/abc/sourcedir.tar.gz", "models/j/output/model.tar.gz"):
        assert allows(policy, "s3:GetObject", obj(f"dogclf/dev/{key}"))


def test_policy_covers_the_training_request_dogclf_sends() -> None:
    from dogclf.aws import training_jobs

    cfg = DogclfConfig.model_validate(
        {"aws": {"bucket": BUCKET}, "training": {"spot": True, "max_wait": 86400}}
    )
    shape = training_jobs.job_shape(cfg, "dogclf-dev-20261201-120000")
    checkpoint = shape["CheckpointConfig"]["S3Uri"].removeprefix("s3://")
    output = shape["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://")
    policy = execution_role_policy(BUCKET, "dogclf")
    arn = "arn:aws:s3:::"
    assert allows(policy, "s3:DeleteObject", f"{arn}{checkpoint}checkpoint.pt")
    assert allows(policy, "s3:PutObject", f"{arn}{output}/job/output/model.tar.gz")
    assert not allows(policy, "s3:DeleteObject", f"{arn}{output}/job/output/model.tar.gz")
    for channel in shape["InputDataConfig"]:
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"].removeprefix("s3://")
        assert allows(policy, "s3:GetObject", f"{arn}{uri}x/a.jpg")
        assert not allows(policy, "s3:DeleteObject", f"{arn}{uri}x/a.jpg")


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index(ROLE_BEGIN) : text.index(ROLE_END) + len(ROLE_END)]


def test_readme_commands_are_generated_from_the_policy() -> None:
    assert readme_block() == render_role_commands(), "regenerate: python -m dogclf.config_doc"
    pasted = re.search(r"--policy-document '(.*?)'", readme_block(), re.S)
    assert pasted is not None
    assert json.loads(pasted.group(1)) == execution_role_policy("MY-BUCKET", "dogclf")
    assert '"Action":"s3:DeleteObject"' in readme_block()


def test_policy_passes_parliament() -> None:
    parliament = pytest.importorskip("parliament")
    document = json.dumps(execution_role_policy(BUCKET, "dogclf"))
    assert [str(f) for f in parliament.analyze_policy_string(document).findings] == []
