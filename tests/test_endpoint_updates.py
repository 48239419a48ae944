"""Endpoint updates AWS leaves stuck or refuses, against the moto server over HTTP
(issue #12, item 10): UpdateRollbackFailed is reported at once, with its reason and what
to do, and a deploy puts it back InService; renaming the variant of an auto-scaled
endpoint takes the old variant's scaling off first, in steps of the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from aws_support import Project, make_project, put_model, record_operations

from dogclf.local.emulator import Emulator

ENDPOINT = "dogclf-dev"
BIGGER = {"DOGCLF_ENDPOINT__INSTANCE_TYPE": "ml.c5.xlarge"}
RENAMED = {"DOGCLF_ENDPOINT__VARIANT_NAME": "Blue"}
OLD_TARGET = "endpoint/dogclf-dev/variant/AllTraffic"
NEW_TARGET = "endpoint/dogclf-dev/variant/Blue"
REASON = "the new variant did not pass ping and the old fleet did not come back"


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path, aws, monkeypatch)
    result = deploy(project, put_model(project))
    assert result.exit_code == 0, result.output
    return project


def deploy(project: Project, uri: str, env: dict[str, str] | None = None) -> Any:
    return project.run("deploy", "--model", uri, "--poll-interval", "0", env=env)


def plan_of(project: Project, env: dict[str, str]) -> dict[str, Any]:
    result = project.run("deploy", "--model", put_model(project), "--dry-run", "--json", env=env)
    assert result.exit_code == 0, result.output
    plan: dict[str, Any] = json.loads(result.stdout)["plan"]
    return plan


def sm() -> Any:
    return boto3.client("sagemaker")


def aas() -> Any:
    return boto3.client("application-autoscaling")


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def test_update_rollback_failed_fails_at_once_with_the_reason_and_what_to_do(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Had deploy kept waiting, the endpoint's next status would have let it pass.
    project.script(
        "endpoint", ["Updating", "UpdateRollbackFailed", "InService"], failure_reason=REASON
    )
    operations = record_operations(monkeypatch)
    result = deploy(project, put_model(project), env=BIGGER)
    assert result.exit_code == 1, result.output
    (line,) = errors(result.stderr)
    assert f"endpoint {ENDPOINT} is UpdateRollbackFailed" in line and REASON in line
    assert "`dogclf deploy` again" in result.stderr and "Traceback" not in result.output
    waited = operations[operations.index("UpdateEndpoint") :]
    assert waited.count("DescribeEndpoint") == 2  # Updating, then UpdateRollbackFailed


def test_a_deploy_puts_an_update_rollback_failed_endpoint_back_in_service(
    project: Project,
) -> None:
    project.script("endpoint", ["Updating", "UpdateRollbackFailed"], failure_reason=REASON)
    assert deploy(project, put_model(project), env=BIGGER).exit_code == 1
    assert sm().describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == (
        "UpdateRollbackFailed"
    )
    plan = plan_of(project, BIGGER)
    (step,) = [s for s in plan["steps"] if s["resource"] == "endpoint"]
    assert step["action"] == "update" and step["message"].startswith("is UpdateRollbackFailed")
    result = deploy(project, put_model(project), env=BIGGER)
    assert result.exit_code == 0, result.output
    now = sm().describe_endpoint(EndpointName=ENDPOINT)
    assert now["EndpointStatus"] == "InService" and "FailureReason" not in now


def refused_raw_update(new_config: str, current: str) -> None:
    """What a naive rename does: a config with the new variant, then UpdateEndpoint."""
    variant = sm().describe_endpoint_config(EndpointConfigName=current)["ProductionVariants"][0]
    sm().create_endpoint_config(
        EndpointConfigName=new_config, ProductionVariants=[{**variant, "VariantName": "Blue"}]
    )
    with pytest.raises(botocore.exceptions.ClientError, match="Application Auto Scaling"):
        sm().update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=new_config)
    sm().delete_endpoint_config(EndpointConfigName=new_config)


def test_renaming_the_variant_of_an_auto_scaled_endpoint_deregisters_it_first(
    project: Project,
) -> None:
    assert project.run("scale").exit_code == 0
    current = sm().describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    plan = plan_of(project, RENAMED)
    new_config = next(s["name"] for s in plan["steps"] if s["resource"] == "endpoint config")
    refused_raw_update(new_config, current)

    plan = plan_of(project, RENAMED)
    steps = [(s["action"], s["resource"], s["name"]) for s in plan["steps"]]
    policy = ("delete", "scaling policy", "dogclf-dev-invocations-target")
    target = ("delete", "scalable target", OLD_TARGET)
    update = next(i for i, s in enumerate(steps) if s[1] == "endpoint")
    assert steps.index(policy) < steps.index(target) < update
    assert "then auto-scaling on variant Blue at 1..3" in plan["steps"][update]["message"]

    result = deploy(project, put_model(project), env=RENAMED)
    assert result.exit_code == 0, result.output
    variants = sm().describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]
    assert [v["VariantName"] for v in variants] == ["Blue"]
    (registered,) = aas().describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert registered["ResourceId"] == NEW_TARGET
    assert (registered["MinCapacity"], registered["MaxCapacity"]) == (1, 3)
    (on,) = aas().describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert on["ResourceId"] == NEW_TARGET
    again = plan_of(project, RENAMED)
    assert again["counts"]["create"] + again["counts"]["update"] == 0
    assert again["counts"]["delete"] == 0
