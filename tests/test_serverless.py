"""Serverless endpoints (issue 15 part 2) against the moto server over HTTP: the config's
limits, deploy (plan, apply, no-op rerun), the real-time <-> serverless switch and the
emulator's refusal of the direct update, `scale`'s one line, `status`'s per-request prices
and crossover, the 4 MB payload limit in the Lambda and `predict --via endpoint`, teardown,
and `dogclf demo --serverless` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from aws_support import Project, make_project, put_model, resources
from test_lambda_handler import FakeContext, StubRuntime, b64, body_of, load_handler, png

from dogclf.config import load_config
from dogclf.errors import ConfigError
from dogclf.local.emulator import Emulator

ENDPOINT = "dogclf-dev"
MiB = 1024 * 1024
SERVERLESS = {
    "DOGCLF_ENDPOINT__MODE": "serverless",
    "DOGCLF_ENDPOINT__MEMORY_MB": "2048",
    "DOGCLF_ENDPOINT__MAX_CONCURRENCY": "5",
    "DOGCLF_ENDPOINT__PROVISIONED_CONCURRENCY": "1",
}
PRICES = json.loads(
    (Path(__file__).resolve().parent.parent / "dogclf/data/prices.json").read_text()
)


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(tmp_path, aws, monkeypatch)


def sm() -> Any:
    return boto3.client("sagemaker")


def steps(out: dict[str, Any]) -> dict[tuple[str, str], dict[str, str]]:
    return {(s["action"], s["resource"]): s for s in out["plan"]["steps"]}


def words(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def deploy(project: Project, uri: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return project.run_json("deploy", "--model", uri, "--poll-interval", "0", *args, env=env)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"DOGCLF_ENDPOINT__MEMORY_MB": "1500"}, "1500 MB is not a serverless memory size"),
        ({"DOGCLF_ENDPOINT__MEMORY_MB": "8192"}, "1024 to 6144 in steps of 1024"),
        ({"DOGCLF_ENDPOINT__MAX_CONCURRENCY": "201"}, "endpoint.max_concurrency"),
        ({"DOGCLF_ENDPOINT__MAX_CONCURRENCY": "0"}, "endpoint.max_concurrency"),
        (
            {"DOGCLF_ENDPOINT__PROVISIONED_CONCURRENCY": "6"},
            "(6) is above endpoint.max_concurrency (5)",
        ),
        (
            {"DOGCLF_ENDPOINT__INSTANCE_TYPE": "ml.g4dn.xlarge"},
            "serverless endpoints run on CPUs only",
        ),
        ({"DOGCLF_ENDPOINT__MODE": "realtime"}, 'only applies with endpoint.mode = "serverless"'),
        (
            {"DOGCLF_ENDPOINT__MODE": "lambda"},
            "endpoint.mode: must be one of 'realtime' or 'serverless'",
        ),
    ],
)
def test_config_holds_serverless_to_awss_limits(
    workdir: Path, env: dict[str, str], problem: str
) -> None:
    cfg = load_config(environ=SERVERLESS)
    assert (cfg.endpoint.mode, cfg.endpoint.memory_mb, cfg.endpoint.provisioned_concurrency) == (
        "serverless",
        2048,
        1,
    )
    with pytest.raises(ConfigError) as failed:
        load_config(environ={**SERVERLESS, **env})
    assert problem in failed.value.message, failed.value.message
    assert len(failed.value.message.splitlines()) == 1


def test_serverless_deploy_status_scale_and_teardown(project: Project) -> None:
    uri = put_model(project)
    before = resources()
    plan = project.run_json("deploy", "--model", uri, "--dry-run", env=SERVERLESS)
    assert plan["plan"]["counts"] == {"create": 3, "update": 0, "delete": 0, "no-op": 0}
    shape = "serverless 2048 MB, max concurrency 5, provisioned 1, variant AllTraffic"
    assert steps(plan)["create", "endpoint config"]["message"] == shape
    assert (
        "1 worker (AWS's advice for serverless)"
        in steps(plan)["create", "sagemaker model"]["message"]
    )
    assert resources() == before  # the dry run created nothing

    out = deploy(project, uri, env=SERVERLESS)
    assert out["status"] == "InService" and out["mode"] == "serverless"
    (variant,) = sm().describe_endpoint_config(EndpointConfigName=out["endpoint_config"])[
        "ProductionVariants"
    ]
    assert variant["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
        "ProvisionedConcurrency": 1,
    }
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    live = sm().describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"][0]
    assert live["CurrentServerlessConfig"]["MemorySizeInMB"] == 2048
    env = sm().describe_model(ModelName=out["model"])["PrimaryContainer"]["Environment"]
    assert env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1" and "OMP_NUM_THREADS" not in env
    assert env["DOGCLF_SERVING__MAX_PAYLOAD_MB"] == "4.0"  # the container refuses > 4 MB too
    again = deploy(project, uri, env=SERVERLESS)
    assert again["plan"]["counts"] == {"create": 0, "update": 0, "delete": 0, "no-op": 3}

    # status: per second of inference at 2048 MB, the provisioned environment per hour, and
    # where one real-time ml.m5.large (endpoint.instance_type) becomes cheaper.
    status = project.run_json("status", env=SERVERLESS)
    (row,) = [r for r in status["resources"] if r["kind"] == "endpoint"]
    rates = PRICES["sagemaker_serverless"]["us-east-1"]
    per_second = rates["inference_gb_second"] * 2
    held = rates["provisioned_concurrency_gb_second"] * 2 * 3600
    hourly = PRICES["sagemaker"]["us-east-1"]["hosting"]["ml.m5.large"]
    pricing = row["pricing"]
    assert pricing["usd_per_inference_second"] == pytest.approx(per_second)
    assert row["hourly_cost"] == pytest.approx(held) and row["running"]
    crossover = (hourly - held) / per_second
    assert pricing["crossover_inference_seconds_per_hour"] == pytest.approx(crossover)
    assert pricing["crossover_requests_per_hour"]["200 ms"] == pytest.approx(crossover * 5)
    assert pricing["prices"]["as_of"] == PRICES["sagemaker_serverless"]["as_of"]
    table = project.run("status", env=SERVERLESS)
    assert f"is cheaper above {crossover:,.0f} s of inference an hour" in words(table.stdout)

    # scale: one line, nothing registered, the same under --dry-run.
    note = project.run_json("scale", env=SERVERLESS)
    assert "\n" not in note["message"] and note["plan"] is None
    for args in ((), ("--dry-run",)):
        said = project.run("scale", *args, env=SERVERLESS)
        assert said.exit_code == 0, said.output
        assert words(said.stdout) == note["message"]
    assert "it scales itself" in note["message"] and "endpoint.max_concurrency" in note["message"]
    assert resources()["targets"] == []

    gone = project.run("teardown", "--yes", env=SERVERLESS)
    assert gone.exit_code == 0, gone.output
    assert sm().list_endpoints()["Endpoints"] == []
    assert sm().list_endpoint_configs()["EndpointConfigs"] == []


def test_switching_modes_replaces_the_endpoint_and_the_direct_update_is_refused(
    project: Project,
) -> None:
    uri = put_model(project)
    first = deploy(project, uri)
    assert project.run("scale").exit_code == 0
    # AWS cannot update an instance-based endpoint into a serverless one: neither can the emulator.
    sm().create_endpoint_config(
        EndpointConfigName="by-hand-serverless",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": first["model"],
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
            }
        ],
    )
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        sm().update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="by-hand-serverless")
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "from an instance-based endpoint config" in refused.value.response["Error"]["Message"]
    sm().delete_endpoint_config(EndpointConfigName="by-hand-serverless")
    with pytest.raises(botocore.exceptions.ClientError) as too_many:  # moto took this too
        sm().create_endpoint_config(
            EndpointConfigName="by-hand-provisioned",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": first["model"],
                    "ServerlessConfig": {
                        "MemorySizeInMB": 2048,
                        "MaxConcurrency": 5,
                        "ProvisionedConcurrency": 6,
                    },
                }
            ],
        )
    assert "must be less than or equal to MaxConcurrency" in str(too_many.value)

    # So deploy plans a replacement, says what it means for traffic, and removes the
    # instance auto-scaling first.
    plan = project.run_json("deploy", "--model", uri, "--dry-run", env=SERVERLESS)
    planned = steps(plan)
    assert planned["update", "endpoint"]["message"].startswith("replace (real-time -> serverless")
    assert "nothing answers until it is InService again" in planned["update", "endpoint"]["message"]
    assert {("delete", "scaling policy"), ("delete", "scalable target")} <= set(planned)
    out = deploy(project, uri, env=SERVERLESS)
    live = sm().describe_endpoint(EndpointName=ENDPOINT)
    assert (
        live["EndpointConfigName"] == out["endpoint_config"]
        and live["EndpointStatus"] == "InService"
    )
    assert "CurrentServerlessConfig" in live["ProductionVariants"][0]
    assert resources()["targets"] == []
    # Serverless -> serverless (more memory) is an update in place.
    more = deploy(project, uri, env={**SERVERLESS, "DOGCLF_ENDPOINT__MEMORY_MB": "4096"})
    assert steps(more)["update", "endpoint"]["message"].startswith("blue/green")
    live = sm().describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"][0]
    assert live["CurrentServerlessConfig"]["MemorySizeInMB"] == 4096

    # Serverless -> real-time is an update AWS allows: blue/green, no gap.
    back = deploy(project, uri)
    message = steps(back)["update", "endpoint"]["message"]
    assert "serverless -> real-time: AWS converts it in place" in message
    variant = sm().describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 1 and "CurrentServerlessConfig" not in variant
    # A real-time config under a serverless endpoint: scale says to deploy first.
    assert deploy(project, uri, env=SERVERLESS)["status"] == "InService"
    wrong = project.run("scale")
    assert wrong.exit_code == 1
    assert 'is serverless but endpoint.mode is "realtime"' in words(wrong.stderr)


def test_the_4_mb_serverless_limit_is_kept_before_sending(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dogclf.aws.lambda_fn import handler_environment

    env = handler_environment(load_config(environ=SERVERLESS))
    assert env["MAX_PAYLOAD_BYTES"] == env["ENDPOINT_MAX_BODY_BYTES"] == str(4 * MiB)
    assert "ENDPOINT_MAX_BODY_BYTES" not in handler_environment(load_config(environ={}))

    # The Lambda: two images within 4 MB make a base64 batch above it: 413, never sent; a
    # lone 3.5 MB image goes raw, under the cap. (A stand-in runtime counts the calls.)
    image = png() + bytes(int(1.6 * MiB))
    with StubRuntime("ok") as stub:
        h = load_handler(
            monkeypatch,
            stub.url,
            **{k: env[k] for k in ("MAX_PAYLOAD_BYTES", "ENDPOINT_MAX_BODY_BYTES")},
        )
        refused = h.handler({"images": [b64(image), b64(image)]}, FakeContext())
        assert refused["statusCode"] == 413 and stub.calls == 0
        assert body_of(refused)["error"] == "PayloadTooLarge"
        lone = png() + bytes(int(3.5 * MiB))
        assert h.handler({"image": b64(lone)}, FakeContext())["statusCode"] == 200
        assert stub.calls == 1

    # predict --via endpoint: a 4.5 MB image is refused in one line before any request (no
    # endpoint exists: sending it would have failed differently).
    big = project.root / "big.png"
    big.write_bytes(png() + bytes(int(4.5 * MiB)))
    said = project.run("predict", str(big), "--via", "endpoint", env=SERVERLESS)
    assert said.exit_code == 1 and said.stderr.count("Error:") == 1
    assert "is over the 4.2 MB request limit of --via endpoint" in words(said.stderr)


# `dogclf demo --serverless` end to end: tests/test_demo.py, with --keep (one demo for both).
