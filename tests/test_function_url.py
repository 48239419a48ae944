"""A Lambda function URL as AWS serves it (issue #12, item 2), on the moto server.

Since October 2025 a URL with AuthType NONE answers 403 unless the alias's resource policy
lets anyone do both lambda:InvokeFunctionUrl and lambda:InvokeFunction. The emulator
(moto_ext/function_urls.py) serves the URL and checks that policy; `lambda-deploy` adds
both statements, repairs a URL that has only the first, and removes both for AWS_IAM.
The function behind the URL is dogclf's handler under awslambdaric, in front of a real
`dogclf serve` (the suite's `served` fixture) standing in for the endpoint.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.exceptions
import pytest
from serving_support import Served
from test_lambda_deploy import write_config
from typer.testing import CliRunner

from dogclf.aws.lambda_fn import URL_INVOKE_SID, URL_PERMISSION_SID
from dogclf.cli import app
from dogclf.local.emulator import Emulator
from dogclf.local.moto_ext import enable_lambda_runtime
from dogclf.local.moto_ext.function_urls import emulated_function_url

FUNCTION, ALIAS = "dogclf-dev-predict", "live"
ALIAS_ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}:{ALIAS}"
# The two statements AWS documents for a public URL, as GetPolicy shows them.
PUBLIC_STATEMENTS = [
    {
        "Sid": URL_PERMISSION_SID,
        "Effect": "Allow",
        "Principal": "*",
        "Action": "lambda:InvokeFunctionUrl",
        "Resource": ALIAS_ARN,
        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}},
    },
    {
        "Sid": URL_INVOKE_SID,
        "Effect": "Allow",
        "Principal": "*",
        "Action": "lambda:InvokeFunction",
        "Resource": ALIAS_ARN,
        "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
    },
]
runner = CliRunner()


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def deploy() -> dict[str, Any]:
    result = runner.invoke(app, ["lambda-deploy", "--json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def url_step(doc: dict[str, Any]) -> dict[str, str]:
    return next(s for s in doc["plan"]["steps"] if s["resource"] == "function url")


def unchanged(doc: dict[str, Any]) -> bool:
    counts = doc["plan"]["counts"]
    return bool(counts["create"] == counts["update"] == counts["delete"] == 0)


def statements() -> list[dict[str, Any]]:
    lam = boto3.client("lambda")
    try:
        policy = lam.get_policy(FunctionName=FUNCTION, Qualifier=ALIAS)["Policy"]
    except lam.exceptions.ResourceNotFoundException:
        return []
    found: list[dict[str, Any]] = json.loads(policy)["Statement"]
    return found


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST to the function URL as a browser or curl would: (status, JSON body)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def signed(url: str, body: bytes) -> dict[str, str]:
    """SigV4 headers for service lambda, what an AWS_IAM URL's caller sends."""
    credentials = boto3.Session().get_credentials()
    request = botocore.awsrequest.AWSRequest("POST", url, data=body)
    botocore.auth.SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    return dict(request.headers.items())


@pytest.mark.slow
def test_a_public_url_answers_only_with_both_permissions(
    project: Path, aws: Emulator, served: Served
) -> None:
    write_config(project, function_url=True, function_url_auth="NONE")
    doc = deploy()
    assert url_step(doc)["message"] == (
        "auth NONE (public, no auth: lambda:InvokeFunctionUrl and lambda:InvokeFunction for anyone)"
    )
    assert statements() == PUBLIC_STATEMENTS
    enable_lambda_runtime(aws.url, {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": served.url})
    url = emulated_function_url(aws.url, doc["function"]["url"])
    image = served.model.test_images()[0][0].read_bytes()

    status, answer = post(url, image, {"Content-Type": "image/jpeg"})
    assert status == 200, answer
    assert {p["label"] for p in answer["predictions"]} <= set(served.model.labels)

    # What a URL made before October 2025's rule (and before this fix) has: 403 for all.
    boto3.client("lambda").remove_permission(
        FunctionName=FUNCTION, Qualifier=ALIAS, StatementId=URL_INVOKE_SID
    )
    assert post(url, image, {"Content-Type": "image/jpeg"}) == (403, {"Message": "Forbidden"})

    repair = deploy()
    assert (url_step(repair)["action"], url_step(repair)["message"]) == (
        "update",
        "add the public lambda:InvokeFunction permission",
    )
    assert post(url, image, {"Content-Type": "image/jpeg"})[0] == 200
    assert unchanged(deploy()) and statements() == PUBLIC_STATEMENTS


def test_iam_auth_removes_both_permissions_and_wants_a_signature(
    project: Path, aws: Emulator
) -> None:
    write_config(project, function_url=True, function_url_auth="NONE")
    deploy()
    write_config(project, function_url=True)  # AWS_IAM, the default

    doc = deploy()

    assert url_step(doc)["message"] == (
        f"auth AWS_IAM (callers need lambda:InvokeFunctionUrl and lambda:InvokeFunction "
        f"on {FUNCTION}:{ALIAS})"
    )
    assert statements() == []
    assert unchanged(deploy())
    url = emulated_function_url(aws.url, doc["function"]["url"])
    body = json.dumps({"image": "aGk="}).encode()
    assert post(url, body) == (403, {"Message": "Forbidden"})
    # Signed, the call reaches the function (the runtime is off: moto echoes the event).
    status, event = post(url, body, {**signed(url, body), "Content-Type": "application/json"})
    assert status == 200
    assert (event["version"], event["body"], event["isBase64Encoded"]) == (
        "2.0",
        body.decode(),
        False,
    )


def test_the_resource_policy_is_kept_per_alias_as_aws_keeps_it(project: Path) -> None:
    write_config(project, function_url=True, function_url_auth="NONE")
    deploy()
    lam = boto3.client("lambda")
    with pytest.raises(botocore.exceptions.ClientError) as repeated:
        lam.add_permission(
            FunctionName=FUNCTION, Qualifier=ALIAS, StatementId=URL_INVOKE_SID,
            Action="lambda:InvokeFunction", Principal="*",
        )  # fmt: skip
    assert repeated.value.response["Error"]["Code"] == "ResourceConflictException"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName=FUNCTION)  # the function itself has no statements
    # A new version behind the alias keeps the alias's policy (moto put it on the version).
    write_config(project, function_url=True, function_url_auth="NONE", top_k=3)
    assert deploy()["function"]["alias"]["version"] == "2"
    assert statements() == PUBLIC_STATEMENTS
