"""`dogclf scale` against the moto server over HTTP: the scalable target and the
target-tracking policy carry the configured numbers, re-runs are no-ops, changes update
in place, and scaling an endpoint that does not exist is one error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_support import Project, make_project, put_model, resources

from dogclf.local.emulator import Emulator

RESOURCE_ID = "endpoint/dogclf-dev/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
POLICY = "dogclf-dev-invocations-target"
NUMBERS = {
    "DOGCLF_AUTOSCALING__MIN_INSTANCES": "1",  # at most endpoint.initial_instance_count
    "DOGCLF_AUTOSCALING__MAX_INSTANCES": "6",
    "DOGCLF_AUTOSCALING__TARGET_INVOCATIONS_PER_INSTANCE": "250",
    "DOGCLF_AUTOSCALING__SCALE_IN_COOLDOWN": "600",
    "DOGCLF_AUTOSCALING__SCALE_OUT_COOLDOWN": "120",
}


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path, aws, monkeypatch)
    result = project.run("deploy", "--model", put_model(project), "--poll-interval", "0")
    assert result.exit_code == 0, result.output
    return project


def aas() -> Any:
    return boto3.client("application-autoscaling")


def targets() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = aas().describe_scalable_targets(ServiceNamespace="sagemaker")[
        "ScalableTargets"
    ]
    return found


def policies() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = aas().describe_scaling_policies(ServiceNamespace="sagemaker")[
        "ScalingPolicies"
    ]
    return found


def counts(out: dict[str, Any]) -> dict[str, int]:
    found: dict[str, int] = out["plan"]["counts"]
    return found


def test_target_and_policy_carry_the_configured_numbers(project: Project) -> None:
    out = project.run_json("scale", env=NUMBERS)
    assert counts(out) == {"create": 2, "update": 0, "delete": 0, "no-op": 0}
    (target,) = targets()
    assert target["ResourceId"] == RESOURCE_ID and target["ScalableDimension"] == DIMENSION
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 6)
    (policy,) = policies()
    assert policy["PolicyName"] == POLICY and policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ResourceId"] == RESOURCE_ID
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 250.0
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert (tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (600, 120)


def test_rerun_plans_no_ops_and_changes_nothing(project: Project) -> None:
    project.run_json("scale", env=NUMBERS)
    before = resources()
    again = project.run_json("scale", env=NUMBERS)
    assert counts(again) == {"create": 0, "update": 0, "delete": 0, "no-op": 2}
    assert resources() == before


def test_new_numbers_update_target_and_policy_in_place(project: Project) -> None:
    project.run_json("scale")
    out = project.run_json("scale", env=NUMBERS)
    assert counts(out) == {"create": 0, "update": 2, "delete": 0, "no-op": 0}
    messages = {s["resource"]: s["message"] for s in out["plan"]["steps"]}
    assert messages["scalable target"] == "1..3 -> 1..6 instances"
    assert "TargetValue 70.0 -> 250.0" in messages["scaling policy"]
    (target,) = targets()
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 6)
    (policy,) = policies()  # still one policy and one target: updated, not added
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 250.0


def test_dry_run_changes_nothing(project: Project) -> None:
    before = resources()
    result = project.run("scale", "--dry-run", "--json", env=NUMBERS)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plan"]
    assert plan["counts"]["create"] == 2
    assert resources() == before


def test_scale_before_deploy_is_one_clear_error(project: Project) -> None:
    boto3.client("sagemaker").delete_endpoint(EndpointName="dogclf-dev")
    before = resources()
    result = project.run("scale")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: endpoint dogclf-dev does not exist"]
    assert "Hint: run `dogclf deploy` first" in result.stderr
    assert "Traceback" not in result.output
    assert resources() == before


def test_min_above_max_is_refused_before_any_call(project: Project) -> None:
    result = project.run(
        "scale",
        env={"DOGCLF_AUTOSCALING__MIN_INSTANCES": "5", "DOGCLF_AUTOSCALING__MAX_INSTANCES": "2"},
    )
    assert result.exit_code == 1
    assert "autoscaling.min_instances (5) is above autoscaling.max_instances (2)" in result.stderr
    assert targets() == []
