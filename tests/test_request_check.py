"""Every request dogclf sends is checked against the service model's pattern / length /
value / enum constraints before it is sent (dogclf/aws/request_check.py), which botocore
does not do: what AWS would refuse fails in the tests, not on the first real run."""

from __future__ import annotations

import os
from typing import Any

import pytest

from dogclf.aws.request_check import CHECK_ENV, LOG_ENV, compile_java, python_pattern
from dogclf.aws.session import AwsContext, call
from dogclf.errors import AwsError
from dogclf.local.emulator import Emulator

ROLE = "arn:aws:iam::123456789012:role/dogclf-sagemaker"


def training_job(**changes: Any) -> dict[str, Any]:
    """A CreateTrainingJob request AWS accepts; `changes` replace top-level members."""
    request: dict[str, Any] = {
        "TrainingJobName": "dogclf-dev-20260101-000000",
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.8",
            "TrainingInputMode": "File",
        },
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/dogclf/dev/models"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Tags": [{"Key": "dogclf:project", "Value": "dogclf"}],
    }
    request.update(changes)
    return request


def sent_requests(client: Any) -> list[str]:
    """Operations that reach the wire (botocore's before-send, after every check)."""
    sent: list[str] = []
    client.meta.events.register("before-send", lambda **kw: sent.append(kw["request"].url))
    return sent


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        (
            {"TrainingJobName": "j" * 64},
            "TrainingJobName='" + "j" * 64 + "' breaks the service model's max length 63",
        ),
        (
            {
                "ResourceConfig": {
                    "InstanceType": "ml.fake",
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 30,
                }
            },
            "ResourceConfig.InstanceType='ml.fake' breaks the service model's enum (one of ",
        ),
        (
            {"TrainingJobName": "dogclf_dev_job"},
            "TrainingJobName='dogclf_dev_job' breaks the service model's pattern "
            "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        ),
        (
            {"StoppingCondition": {"MaxRuntimeInSeconds": 0}},
            "StoppingCondition.MaxRuntimeInSeconds=0 breaks the service model's min value 1",
        ),
        (
            {"Tags": [{"Key": "cost-center", "Value": "R&D #42"}]},
            "Tags[0].Value='R&D #42' breaks the service model's pattern",
        ),
    ],
    ids=["too-long-name", "bad-enum", "bad-pattern", "below-min", "tag-value"],
)
def test_a_request_aws_would_refuse_is_refused_before_it_is_sent(
    aws: Emulator, changes: dict[str, Any], refusal: str
) -> None:
    sm = AwsContext().client("sagemaker")
    sent = sent_requests(sm)
    with pytest.raises(AwsError) as caught:
        call("start the training job", sm.create_training_job, **training_job(**changes))
    assert caught.value.message.startswith("cannot start the training job: CreateTrainingJob: ")
    assert refusal in caught.value.message
    assert sent == []  # nothing reached the emulator
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []


def test_a_valid_request_passes_and_is_counted(
    aws: Emulator, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "checked.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    sm = AwsContext().client("sagemaker")
    sent = sent_requests(sm)
    sm.create_training_job(**training_job(Tags=[{"Key": "team", "Value": "Équipe 7 = ok"}]))
    assert len(sent) == 1
    assert log.read_text().splitlines() == ["sagemaker CreateTrainingJob 0"]


def test_the_check_is_on_for_the_suite_and_the_demo(aws: Emulator) -> None:
    # The aws fixture's environment is the emulator's: every command, test or demo
    # subprocess pointed at the emulator checks its requests.
    assert os.environ[CHECK_ENV] == "1"
    assert aws.env()[CHECK_ENV] == "1"


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*", "Équipe 7: a/b=c", "R&D #42"),
        (r"\p{Alnum}+\z", "abc123", "abc-1"),
        (r"[^]a]+", "bcd", "ba"),
        (r"\P{N}+", "abc", "a1"),
        # a UTF-16 surrogate pair range (Application Auto Scaling's ResourceId)
        (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", "a/b 😀", "a\x01"),
        (r"[\w-_]*", "a-b_c", "a.b"),  # Java reads the dash after \w literally
        (r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+", ROLE, ROLE + " "),
    ],
)
def test_java_patterns_are_translated(pattern: str, good: str, bad: str) -> None:
    compiled = compile_java(pattern)
    assert compiled is not None, python_pattern(pattern)
    assert compiled.fullmatch(good) and not compiled.fullmatch(bad)


def test_an_untranslatable_pattern_is_skipped_not_guessed() -> None:
    assert compile_java(r"[a-z&&[^e]]+") is None
