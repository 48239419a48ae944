"""A flaky AWS (dogclf/local/moto_ext/faults.py) and dogclf surviving it (dogclf/aws/
session.py: botocore's retries, the IAM-propagation retry, a lost create's answer read back).

The injector's answers are parsed by plain botocore clients with retries off, so each kind
is shown in the service's own wire protocol; then dogclf's clients ride them out; then the
whole demo runs against a flaky emulator and must end as a clean run does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
from demo_support import SMALL, clean_env

from dogclf.aws.session import AwsContext
from dogclf.errors import DogclfError
from dogclf.local.emulator import DUMMY_CREDENTIALS, Emulator
from dogclf.local.moto_ext.faults import fault_state

TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "sagemaker.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"


def no_retries(service: str) -> Any:
    return boto3.client(service, config=botocore.config.Config(retries={"total_max_attempts": 1}))


def zip_bytes() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    return buf.getvalue()


# Each service's throttling answer, as botocore reads it off the wire.
THROTTLES = [
    ("s3", "PutObject", lambda c: c.put_object(Bucket="flaky-bucket", Key="k", Body=b"x"),
     "SlowDown", 503),
    ("iam", "ListRoles", lambda c: c.list_roles(), "Throttling", 400),
    ("lambda", "ListFunctions", lambda c: c.list_functions(), "TooManyRequestsException", 429),
    ("sagemaker", "ListModels", lambda c: c.list_models(), "ThrottlingException", 400),
    ("application-autoscaling", "DescribeScalableTargets",
     lambda c: c.describe_scalable_targets(ServiceNamespace="sagemaker"),
     "ThrottlingException", 400),
]  # fmt: skip


@pytest.mark.parametrize(("service", "operation", "send", "code", "status"), THROTTLES)
def test_throttling_is_answered_in_each_services_protocol(
    aws: Emulator, service: str, operation: str, send: Any, code: str, status: int
) -> None:
    boto3.client("s3").create_bucket(Bucket="flaky-bucket")
    aws.set_faults(1.0, kinds=("throttle",), operations=(operation,), max_faults=1)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        send(no_retries(service))
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert aws.fault_counts() == {"throttle": 1}


@pytest.mark.parametrize(
    ("kind", "code"), [("500", "InternalFailure"), ("503", "ServiceUnavailable")]
)
def test_server_errors_are_retried_by_dogclfs_clients(aws: Emulator, kind: str, code: str) -> None:
    aws.set_faults(1.0, kinds=(kind,), operations=("ListModels",), max_faults=1)
    with pytest.raises(botocore.exceptions.ClientError, match=code):
        no_retries("sagemaker").list_models()
    aws.set_faults(1.0, kinds=(kind,), operations=("ListModels",), max_faults=3)
    assert AwsContext().client("sagemaker").list_models()["Models"] == []
    assert aws.fault_counts() == {kind: 3}


def test_a_create_whose_answer_was_lost_answers_with_what_it_made(aws: Emulator) -> None:
    """moto applies each create, then its answer is lost (500): the retry hears "already
    exists", and dogclf's client answers as the create would have, from a read of it."""
    ctx = AwsContext()
    iam, lam, sm = ctx.client("iam"), ctx.client("lambda"), ctx.client("sagemaker")
    creates = ("CreateRole", "CreateFunction", "CreateModel", "CreateAlias")
    aws.set_faults(after_rate=1.0, operations=creates, max_faults=4)
    role = iam.create_role(RoleName="flaky-role", AssumeRolePolicyDocument=TRUST)["Role"]
    fn = lam.create_function(
        FunctionName="flaky-fn",
        Runtime="python3.12",
        Role=role["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": zip_bytes()},
    )
    version = lam.publish_version(FunctionName="flaky-fn")["Version"]
    alias = lam.create_alias(FunctionName="flaky-fn", Name="live", FunctionVersion=version)
    model = sm.create_model(
        ModelName="flaky-model", ExecutionRoleArn=role["Arn"], PrimaryContainer={"Image": IMAGE}
    )
    assert aws.fault_counts() == {"lost": 4}
    assert role["RoleName"] == "flaky-role" and fn["FunctionName"] == "flaky-fn"
    assert alias["Name"] == "live" and model["ModelArn"].endswith("model/flaky-model")
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["flaky-role"]
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["flaky-fn"]
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["flaky-model"]


def test_a_new_role_is_waited_for_in_one_place(aws: Emulator) -> None:
    """For 2 s after CreateRole, Lambda and SageMaker answer as AWS does for a role that has
    not propagated; dogclf's clients (every one, whatever module calls) wait it out."""
    ctx = AwsContext()
    aws.set_faults(role_delay_s=2.0)
    role = ctx.client("iam").create_role(RoleName="fresh", AssumeRolePolicyDocument=TRUST)
    arn = role["Role"]["Arn"]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        no_retries("lambda").create_function(
            FunctionName="fn",
            Runtime="python3.12",
            Role=arn,
            Handler="handler.handler",
            Code={"ZipFile": zip_bytes()},
        )
    assert caught.value.response["Error"] == {
        "Code": "InvalidParameterValueException",
        "Message": "The role defined for the function cannot be assumed by Lambda.",
    }
    with pytest.raises(botocore.exceptions.ClientError, match=f"Could not assume role {arn}"):
        no_retries("sagemaker").create_model(
            ModelName="m", ExecutionRoleArn=arn, PrimaryContainer={"Image": IMAGE}
        )
    ctx.client("sagemaker").create_model(
        ModelName="m", ExecutionRoleArn=arn, PrimaryContainer={"Image": IMAGE}
    )
    assert aws.fault_counts()["iam-propagation"] >= 3


def test_moto_api_and_the_emulators_own_calls_are_never_faulted(aws: Emulator) -> None:
    aws.set_faults(1.0)
    internal = AwsContext(region="us-east-1", endpoint_url=aws.url, credentials=DUMMY_CREDENTIALS)
    assert internal.client("sagemaker").list_models()["Models"] == []
    assert fault_state(aws.url)["settings"]["rate"] == 1.0  # the route itself answered
    assert aws.fault_counts() == {}


def test_a_role_delay_dogclf_would_not_wait_out_is_refused(aws: Emulator) -> None:
    with pytest.raises(DogclfError, match="out of range"):
        aws.set_faults(role_delay_s=30)


# ------------------------------------------------------------------ the whole pipeline


def run_demo(tmp_path: Path, name: str, *args: str) -> dict[str, Any]:
    env = clean_env()
    workdir = str(tmp_path / name)
    done = subprocess.run(
        [sys.executable, "-m", "dogclf", "demo", "--json", "--workdir", workdir, *SMALL, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def unhashed(made: dict[str, list[str]]) -> dict[str, list[str]]:
    """Names without the content hash some carry (a model's name hashes its artifact's
    URI, which names the run's training job, which names the time)."""
    return {k: [re.sub(r"-[0-9a-f]{12}$", "-<hash>", n) for n in v] for k, v in made.items()}


@pytest.mark.slow
def test_the_pipeline_against_a_flaky_aws_ends_as_a_clean_run_does(
    tmp_path: Path, small_demo: subprocess.CompletedProcess[str]
) -> None:
    assert small_demo.returncode == 0, small_demo.stderr[-4000:]
    clean = json.loads(small_demo.stdout)  # the session's clean run, the same size
    flaky = run_demo(tmp_path, "flaky", "--faults", "0.15")
    assert clean["ok"] and flaky["ok"], flaky["steps"]
    # Faults of every kind were injected, dozens of them, and each was ridden out.
    counts = flaky["faults"]
    assert set(counts) == {"throttle", "500", "503", "lost", "iam-propagation"}, counts
    assert sum(counts.values()) >= 24, counts
    # The same predictions, and the same resources, each made once (no duplicate model,
    # endpoint config, function version, role...), and nothing left after teardown.
    assert flaky["top1"] == clean["top1"]
    assert unhashed(flaky["made"]) == unhashed(clean["made"])
    assert all(len(names) == 1 for kind, names in flaky["made"].items() if kind != "lambda version")
    assert flaky["made"]["lambda version"] == [
        "dogclf-demo-predict:$LATEST",
        "dogclf-demo-predict:1",
    ]
    assert flaky["left_after_teardown"] == [] == clean["left_after_teardown"]


def test_the_demo_summary_counts_faults_by_kind() -> None:
    from dogclf.commands.demo_cmd import fault_line

    assert fault_line({"throttle": 2, "500": 1}) == "faults injected: 3 (500 1, throttle 2)"
    assert fault_line({}) == "faults injected: 0"
