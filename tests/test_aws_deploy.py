"""`dogclf deploy` against the moto server over HTTP: model, endpoint config, endpoint;
no-op re-runs, blue/green updates, the latest-model pointer, failures, auto-scaling
around an update, --dry-run, and the AccessDenied hint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from aws_support import (
    BUCKET,
    READ_ONLY,
    ROLE,
    Project,
    enforce_iam,
    make_project,
    put_model,
    record_operations,
    resources,
)

from dogclf.aws.artifacts import LatestModel, write_latest
from dogclf.aws.session import AwsContext
from dogclf.config import load_config
from dogclf.local.emulator import Emulator

ENDPOINT = "dogclf-dev"
BIGGER = {
    "DOGCLF_ENDPOINT__INSTANCE_TYPE": "ml.c5.xlarge",
    "DOGCLF_ENDPOINT__INITIAL_INSTANCE_COUNT": "2",
}


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(tmp_path, aws, monkeypatch)


def deploy(project: Project, *args: str, env: dict[str, str] | None = None) -> Any:
    return project.run_json("deploy", "--poll-interval", "0", *args, env=env)


def plan_of(project: Project, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = project.run("deploy", "--dry-run", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    plan: dict[str, Any] = json.loads(result.stdout)["plan"]
    return plan


def sm() -> Any:
    return boto3.client("sagemaker")


def endpoint() -> dict[str, Any]:
    found: dict[str, Any] = sm().describe_endpoint(EndpointName=ENDPOINT)
    return found


def config_names() -> list[str]:
    return sorted(c["EndpointConfigName"] for c in sm().list_endpoint_configs()["EndpointConfigs"])


def model_names() -> list[str]:
    return sorted(m["ModelName"] for m in sm().list_models()["Models"])


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def test_first_deploy_creates_model_config_endpoint_and_a_rerun_plans_no_ops(
    project: Project,
) -> None:
    uri = put_model(project)
    out = deploy(project, "--model", uri)
    assert out["status"] == "InService" and out["endpoint"] == ENDPOINT
    assert out["plan"]["counts"] == {"create": 3, "update": 0, "delete": 0, "no-op": 0}

    model = sm().describe_model(ModelName=out["model"])
    container = model["PrimaryContainer"]
    assert container["ModelDataUrl"] == uri and container["Image"] == out["image"]
    assert "pytorch-inference" in out["image"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert model["ExecutionRoleArn"] == ROLE
    config = sm().describe_endpoint_config(EndpointConfigName=out["endpoint_config"])
    (variant,) = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 1)
    assert variant["ModelName"] == out["model"] and variant["VariantName"] == "AllTraffic"
    assert endpoint()["EndpointConfigName"] == out["endpoint_config"]
    tags = {
        t["Key"]: t["Value"] for t in sm().list_tags(ResourceArn=endpoint()["EndpointArn"])["Tags"]
    }
    assert tags["dogclf:project"] == "dogclf" and tags["dogclf:stage"] == "dev"

    before = resources()
    again = deploy(project, "--model", uri)
    assert again["plan"]["counts"] == {"create": 0, "update": 0, "delete": 0, "no-op": 3}
    assert resources() == before


def test_changed_instance_type_and_count_switch_the_same_endpoint_blue_green(
    project: Project,
) -> None:
    uri = put_model(project)
    first = deploy(project, "--model", uri)
    arn = endpoint()["EndpointArn"]

    out = deploy(project, "--model", uri, env=BIGGER)
    steps = {(s["action"], s["resource"]): s for s in out["plan"]["steps"]}
    # A new model too: its Environment sizes the model server for the type (4 vCPUs, not 2).
    assert steps["create", "sagemaker model"]["name"] == out["model"] != first["model"]
    assert "4 workers" in steps["create", "sagemaker model"]["message"]
    assert steps["delete", "sagemaker model"]["name"] == first["model"]
    assert steps["create", "endpoint config"]["name"] == out["endpoint_config"]
    assert first["endpoint_config"] in steps["update", "endpoint"]["message"]
    assert steps["delete", "endpoint config"]["name"] == first["endpoint_config"]

    now = endpoint()
    assert now["EndpointArn"] == arn and now["EndpointStatus"] == "InService"  # same endpoint
    assert now["EndpointConfigName"] == out["endpoint_config"] != first["endpoint_config"]
    assert now["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert config_names() == [out["endpoint_config"]]  # the old config is gone
    assert model_names() == [out["model"]]
    assert plan_of(project, "--model", uri, env=BIGGER)["counts"]["no-op"] == 3


def test_default_model_follows_the_latest_pointer_and_old_models_go(project: Project) -> None:
    missing = project.run("deploy")
    assert missing.exit_code == 1
    (line,) = errors(missing.stderr)
    assert "no trained model yet" in line and "latest.json does not exist" in line
    assert "train-sagemaker" in missing.stderr and "Traceback" not in missing.output

    ctx, cfg = AwsContext(), load_config()
    first_uri = put_model(project, "models/run-1/output/model.tar.gz")
    write_latest(ctx, cfg, LatestModel(first_uri, "train-ec2"))
    first = deploy(project)
    assert first["model_data"] == first_uri

    second_uri = put_model(project, "models/run-2/output/model.tar.gz")
    write_latest(ctx, cfg, LatestModel(second_uri, "train-ec2"))
    second = deploy(project, "--model", "latest")
    assert second["model_data"] == second_uri and second["model"] != first["model"]
    container = sm().describe_model(ModelName=second["model"])["PrimaryContainer"]
    assert container["ModelDataUrl"] == second_uri
    assert model_names() == [second["model"]] and config_names() == [second["endpoint_config"]]


def test_a_model_uri_that_does_not_exist_is_one_error_and_creates_nothing(
    project: Project,
) -> None:
    put_model(project)
    before = resources()
    result = project.run("deploy", "--model", f"s3://{BUCKET}/nope/model.tar.gz")
    assert result.exit_code == 1
    (line,) = errors(result.stderr)
    assert f"s3://{BUCKET}/nope/model.tar.gz does not exist" in line
    assert resources() == before


def test_failed_endpoint_exits_1_with_its_reason_and_the_next_deploy_recreates_it(
    project: Project,
) -> None:
    uri = put_model(project)
    project.script(
        "endpoint",
        ["Creating", "Failed"],
        failure_reason="ClientError: Please ensure the model container passes ping",
    )
    result = project.run("deploy", "--model", uri, "--poll-interval", "0")
    assert result.exit_code == 1
    (line,) = errors(result.stderr)
    assert f"endpoint {ENDPOINT} is Failed" in line
    assert "ClientError: Please ensure the model container passes ping" in line
    assert "endpoint dogclf-dev: Creating" in result.stderr  # progress while waiting
    assert "Hint:" in result.stderr and "Traceback" not in result.output

    plan = plan_of(project, "--model", uri)
    (step,) = [s for s in plan["steps"] if s["resource"] == "endpoint"]
    assert step["action"] == "update" and "is Failed: delete it, create it" in step["message"]
    fixed = deploy(project, "--model", uri)
    assert fixed["status"] == "InService"
    assert "FailureReason" not in endpoint()


def test_failed_update_rolls_back_exits_1_and_keeps_the_old_config(project: Project) -> None:
    uri = put_model(project)
    first = deploy(project, "--model", uri)
    project.script(
        "endpoint", ["Updating", "Failed"], failure_reason="the new variant did not pass ping"
    )
    result = project.run("deploy", "--model", uri, "--poll-interval", "0", env=BIGGER)
    assert result.exit_code == 1
    (line,) = errors(result.stderr)
    assert "failed and was rolled back to " + first["endpoint_config"] in line
    assert "the new variant did not pass ping" in line
    now = endpoint()
    assert now["EndpointStatus"] == "InService"
    assert now["EndpointConfigName"] == first["endpoint_config"]
    assert first["endpoint_config"] in config_names()  # cleanup did not run


def test_dry_run_calls_nothing_that_changes_state(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = put_model(project)
    before = resources()
    plan = plan_of(project, "--model", uri)
    assert plan["counts"] == {"create": 3, "update": 0, "delete": 0, "no-op": 0}
    assert resources() == before

    deploy(project, "--model", uri)
    assert project.run("scale").exit_code == 0
    before = resources()
    operations = record_operations(monkeypatch)
    result = project.run("deploy", "--model", uri, "--dry-run", env=BIGGER)
    assert result.exit_code == 0, result.output
    assert "blue/green" in result.stderr and "dry run: nothing was changed" in result.stderr
    plan = plan_of(project, "--model", uri, env=BIGGER)
    assert any("auto-scaling off during the switch" in s["message"] for s in plan["steps"])
    assert operations and all(op.startswith(READ_ONLY) for op in operations), operations
    assert resources() == before


def test_instance_type_change_pauses_auto_scaling_and_restores_it(project: Project) -> None:
    """AWS refuses UpdateEndpoint when it changes the instance type of a variant registered
    with Application Auto Scaling (so does the emulator, shown first); deploy deregisters
    around the switch and registers the configured numbers again."""
    uri = put_model(project)
    first = deploy(project, "--model", uri)
    assert project.run("scale").exit_code == 0
    plan = plan_of(project, "--model", uri, env=BIGGER)
    new_config = next(s["name"] for s in plan["steps"] if s["resource"] == "endpoint config")
    # What a naive update gets: create the new config, then UpdateEndpoint directly.
    variant = sm().describe_endpoint_config(EndpointConfigName=first["endpoint_config"])
    sm().create_endpoint_config(
        EndpointConfigName=new_config,
        ProductionVariants=[
            {
                **variant["ProductionVariants"][0],
                "InstanceType": "ml.c5.xlarge",
                "InitialInstanceCount": 2,
            }
        ],
    )
    with pytest.raises(botocore.exceptions.ClientError, match="Application Auto Scaling"):
        sm().update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=new_config)
    sm().delete_endpoint_config(EndpointConfigName=new_config)

    plan = plan_of(project, "--model", uri, env=BIGGER)
    (step,) = [s for s in plan["steps"] if s["resource"] == "endpoint"]
    assert "auto-scaling off during the switch (ml.m5.large -> ml.c5.xlarge)" in step["message"]
    out = deploy(project, "--model", uri, env=BIGGER)
    assert endpoint()["EndpointConfigName"] == out["endpoint_config"]
    aas = boto3.client("application-autoscaling")
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    (policy,) = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["PolicyName"] == "dogclf-dev-invocations-target"


def test_model_only_change_keeps_the_instance_count_auto_scaling_chose(
    project: Project,
) -> None:
    deploy(project, "--model", put_model(project))
    assert project.run("scale").exit_code == 0
    sm().update_endpoint_weights_and_capacities(  # as auto-scaling would under load
        EndpointName=ENDPOINT,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}],
    )
    out = deploy(project, "--model", put_model(project, "models/run-2/model.tar.gz"))
    (step,) = [s for s in out["plan"]["steps"] if s["resource"] == "endpoint"]
    assert "keeps the instance count auto-scaling set" in step["message"]
    assert endpoint()["ProductionVariants"][0]["CurrentInstanceCount"] == 3
    aas = boto3.client("application-autoscaling")
    assert len(aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]) == 1


def test_access_denied_names_the_missing_action(project: Project, aws: Emulator) -> None:
    """moto's IAM enforcement, with an identity that may read but not create."""
    uri = put_model(project)
    iam = boto3.client("iam")
    iam.create_user(UserName="ci-deployer")
    read_only = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:ListBucket",
                    "sagemaker:Describe*",
                    "sagemaker:List*",
                ],
                "Resource": "*",
            }
        ],
    }
    iam.put_user_policy(
        UserName="ci-deployer", PolicyName="read-only", PolicyDocument=json.dumps(read_only)
    )
    key = iam.create_access_key(UserName="ci-deployer")["AccessKey"]
    env = {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_SESSION_TOKEN": None,
    }
    enforce_iam(aws, True)
    try:
        result = project.run("deploy", "--model", uri, "--poll-interval", "0", env=env)  # type: ignore[arg-type]
    finally:
        enforce_iam(aws, False)
    assert result.exit_code == 1
    (line,) = errors(result.stderr)
    assert "access denied (sagemaker:CreateModel)" in line
    hints = [h for h in result.stderr.splitlines() if h.startswith("Hint:")]
    assert hints == [
        "Hint: grant sagemaker:CreateModel to the identity you run dogclf as (IAM policy), "
        "or use another profile"
    ]
    assert "Traceback" not in result.output
    assert model_names() == []


def test_a_gpu_type_moto_does_not_list_deploys_as_on_aws(project: Project) -> None:
    # moto 5.2.5's own list ends before ml.g5; the emulator checks botocore's enum instead
    # (moto_ext/instance_types.py), so what AWS accepts deploys and what it lacks is refused.
    uri = put_model(project)
    out = deploy(project, "--model", uri, env={"DOGCLF_ENDPOINT__INSTANCE_TYPE": "ml.g5.xlarge"})
    assert out["status"] == "InService" and "gpu" in out["image"]
    (variant,) = sm().describe_endpoint_config(EndpointConfigName=out["endpoint_config"])[
        "ProductionVariants"
    ]
    assert variant["InstanceType"] == "ml.g5.xlarge"
    with pytest.raises(botocore.exceptions.ClientError, match="ProductionVariantInstanceType"):
        sm().create_endpoint_config(
            EndpointConfigName="not-a-type",
            ProductionVariants=[
                {"VariantName": "v", "ModelName": out["model"], "InstanceType": "ml.x9.large"}
            ],
        )
