"""The account's Lambda concurrency quota (issue #12, item 1), against the moto server.

The emulator models AWS's quota (moto_ext/lambda_concurrency.py): a limit per account
(1000 unless set; a new account often has 10), of which PutFunctionConcurrency and
PutProvisionedConcurrencyConfig keep 100 unreserved, or all of it when the limit is lower.
`lambda-deploy` reads GetAccountSettings and refuses in the plan what AWS would refuse after
the function, version and alias were made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from test_lambda_deploy import write_config
from typer.testing import CliRunner, Result

from dogclf.cli import app
from dogclf.local.emulator import Emulator
from dogclf.local.moto_ext.lambda_concurrency import set_lambda_concurrency_limit

FUNCTION = "dogclf-dev-predict"
runner = CliRunner()


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lambda_deploy(*args: str) -> Result:
    return runner.invoke(app, ["lambda-deploy", *args])


def error_lines(result: Result) -> list[str]:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def nothing_was_made() -> None:
    lam = boto3.client("lambda")
    assert lam.list_functions()["Functions"] == []  # so no version and no alias either
    assert boto3.client("iam").list_roles()["Roles"] == []


def reserved() -> int | None:
    found = boto3.client("lambda").get_function_concurrency(FunctionName=FUNCTION)
    value: int | None = found.get("ReservedConcurrentExecutions")
    return value


def test_a_new_accounts_limit_refuses_a_reserve_in_the_plan(project: Path, aws: Emulator) -> None:
    set_lambda_concurrency_limit(aws.url, 10)
    write_config(project, reserved_concurrency=5)

    for args in (["--dry-run"], []):
        lines = error_lines(lambda_deploy(*args))
        assert lines == [
            "Error: lambda.reserved_concurrency = 5 does not fit this account: its Lambda "
            "concurrency limit is 10, 10 is free for this function and AWS keeps 10 "
            "unreserved; leave lambda.reserved_concurrency unset (the function shares the "
            "account pool)"
        ]
        nothing_was_made()


def test_the_default_deploys_on_a_new_account(project: Path, aws: Emulator) -> None:
    """The old default (a reserve of 10) failed here after the function, version and alias."""
    set_lambda_concurrency_limit(aws.url, 10)
    write_config(project)

    result = lambda_deploy("--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["function"]["reserved_concurrency"] is None
    assert reserved() is None
    again = json.loads(lambda_deploy("--json").stdout)["plan"]["counts"]
    assert again["create"] == again["update"] == again["delete"] == 0


def test_provisioned_without_a_reserve_draws_on_the_unreserved_pool(
    project: Path, aws: Emulator
) -> None:
    set_lambda_concurrency_limit(aws.url, 10)
    write_config(project, provisioned_concurrency=1)
    (line,) = error_lines(lambda_deploy("--dry-run"))
    assert line.startswith("Error: lambda.provisioned_concurrency = 1 does not fit")
    assert line.endswith("set lambda.provisioned_concurrency = 0")
    nothing_was_made()


def test_the_functions_own_reserve_counts_as_free(project: Path, aws: Emulator) -> None:
    """Limit 150: 50 can be reserved. The function's own 40 comes back before 50 is set."""
    set_lambda_concurrency_limit(aws.url, 150)
    write_config(project, reserved_concurrency=40)
    assert lambda_deploy().exit_code == 0
    write_config(project, reserved_concurrency=50)
    assert lambda_deploy().exit_code == 0
    assert reserved() == 50

    write_config(project, reserved_concurrency=51)
    (line,) = error_lines(lambda_deploy("--dry-run"))
    assert "limit is 150, 150 is free for this function and AWS keeps 100 unreserved" in line
    assert line.endswith("set lambda.reserved_concurrency to at most 50")
    assert reserved() == 50


# ---------------------------------------------------------------- the emulator itself


def make_function(name: str) -> None:
    role = boto3.client("iam").create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    boto3.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="a.b", Code={"ZipFile": b"PK"}
    )


def refusal(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**kwargs)
    error: dict[str, Any] = caught.value.response["Error"]
    return error


def test_the_emulator_refuses_as_aws_does(aws: Emulator) -> None:
    lam = boto3.client("lambda")
    limits = lam.get_account_settings()["AccountLimit"]
    assert (limits["ConcurrentExecutions"], limits["UnreservedConcurrentExecutions"]) == (
        1000,
        1000,
    )
    make_function("a")
    make_function("b")
    lam.put_function_concurrency(FunctionName="a", ReservedConcurrentExecutions=900)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 100

    error = refusal(lam.put_function_concurrency, FunctionName="b", ReservedConcurrentExecutions=1)
    assert error == {
        "Code": "InvalidParameterValueException",
        "Message": "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100].",
    }

    set_lambda_concurrency_limit(aws.url, 10)
    lam.delete_function_concurrency(FunctionName="a")
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 10
    version = lam.publish_version(FunctionName="b")["Version"]
    error = refusal(
        lam.put_provisioned_concurrency_config,
        FunctionName="b",
        Qualifier=version,
        ProvisionedConcurrentExecutions=1,
    )
    assert error["Message"] == (
        "Specified ConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [10]."
    )
    assert lam.put_function_concurrency(FunctionName="b", ReservedConcurrentExecutions=0)
