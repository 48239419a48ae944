"""The PyTorch inference image's model server sized by `dogclf deploy`: workers and torch
threads per instance type in the CreateModel request (moto over HTTP, the real CLI), the
user's endpoint.environment winning, the BYO image left alone, the vCPU table; and the
emulator's handler service starting the workers and threads the image's TorchServe would."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_support import Project, make_project, put_model
from serving_support import TrainedModel, clean_env

from dogclf.aws.instance_gpus import GPU_COUNTS
from dogclf.aws.pricing import load_prices
from dogclf.local.emulator import Emulator
from dogclf.local.pytorch_inference import worker_count
from dogclf.local.serve_process import start_pytorch_inference

SIZED = ("SAGEMAKER_MODEL_SERVER_WORKERS", "OMP_NUM_THREADS")


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(tmp_path, aws, monkeypatch)


def deployed_environment(project: Project, env: dict[str, str]) -> dict[str, str]:
    """Deploy, then the Environment of the model the endpoint's config names."""
    uri = put_model(project)
    out = project.run_json("deploy", "--poll-interval", "0", "--model", uri, env=env)
    assert out["status"] == "InService"
    model: Any = boto3.client("sagemaker").describe_model(ModelName=out["model"])
    environment: dict[str, str] = model["PrimaryContainer"]["Environment"]
    return environment


def create_model_environment(
    project: Project, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The Environment of the CreateModel request deploy sends. Read from the request, not
    the endpoint: moto 5.2.5's endpoint-config instance types stop before ml.g5 (real
    SageMaker hosts ml.g5.12xlarge), so that deploy fails after CreateModel here."""
    from dogclf.aws.session import AwsContext

    sent: list[dict[str, Any]] = []
    original = AwsContext.client

    def recording(self: AwsContext, service: str, **config: Any) -> Any:
        client = original(self, service, **config)
        client.meta.events.register(
            "provide-client-params.sagemaker.CreateModel",
            lambda params, **_: sent.append(params),
            unique_id="create-model-params",
        )
        return client

    monkeypatch.setattr(AwsContext, "client", recording)
    project.run("deploy", "--poll-interval", "0", "--model", put_model(project), env=env)
    assert len(sent) == 1
    environment: dict[str, str] = sent[0]["PrimaryContainer"]["Environment"]
    return environment


@pytest.mark.parametrize(
    ("instance_type", "workers", "threads"),
    [
        ("ml.m5.large", "2", "1"),  # 2 vCPUs: one worker per vCPU, one torch thread each
        ("ml.c5.4xlarge", "16", "1"),
        ("ml.g4dn.xlarge", "1", "4"),  # one worker per GPU, the vCPUs for its decoding
        ("ml.g5.12xlarge", "4", "12"),  # 4 GPUs, 48 vCPUs
    ],
)
def test_deploy_sizes_the_model_server_for_the_instance_type(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    instance_type: str,
    workers: str,
    threads: str,
) -> None:
    chosen = {"DOGCLF_ENDPOINT__INSTANCE_TYPE": instance_type}
    env = create_model_environment(project, chosen, monkeypatch)
    assert {k: env.get(k) for k in SIZED} == dict(zip(SIZED, (workers, threads), strict=True))
    # Any SAGEMAKER_TS_* would make TorchServe ignore the worker count (torchserve.py).
    assert not [k for k in env if k.startswith("SAGEMAKER_TS_")]
    assert env["SAGEMAKER_PROGRAM"] == "inference.py"


def test_the_plan_shows_the_model_servers_size(project: Project) -> None:
    result = project.run("deploy", "--dry-run", "--json", "--model", put_model(project))
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["plan"]["steps"]
    model = next(s for s in steps if s["resource"] == "sagemaker model")
    line = "model server: 2 workers, torch on 1 thread each (ml.m5.large: 2 vCPUs)"
    assert model["message"].endswith("; " + line)


def test_endpoint_environment_wins_and_keeps_the_worker_count(project: Project) -> None:
    user = {"OMP_NUM_THREADS": "2", "SAGEMAKER_TS_BATCH_SIZE": "4", "MY_FLAG": "on"}
    env = deployed_environment(project, {"DOGCLF_ENDPOINT__ENVIRONMENT": json.dumps(user)})
    assert env["OMP_NUM_THREADS"] == "2" and env["MY_FLAG"] == "on"
    # SAGEMAKER_TS_BATCH_SIZE switches TorchServe to SAGEMAKER_TS_MIN/MAX_WORKERS (default 1):
    # deploy carries its count over.
    assert env["SAGEMAKER_TS_MIN_WORKERS"] == env["SAGEMAKER_TS_MAX_WORKERS"] == "2"
    own = {"DOGCLF_ENDPOINT__ENVIRONMENT": json.dumps({"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})}
    assert deployed_environment(project, own)["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"


def test_a_bad_environment_name_is_refused_before_anything(project: Project) -> None:
    bad = {"DOGCLF_ENDPOINT__ENVIRONMENT": json.dumps({"1-BAD": "x"})}
    result = project.run("deploy", "--dry-run", "--model", put_model(project), env=bad)
    assert result.exit_code == 1
    assert "endpoint.environment" in result.stderr and "1-BAD" in result.stderr


def test_the_byo_image_gets_no_torchserve_settings(project: Project) -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogclf-serve:1"
    env = deployed_environment(project, {"DOGCLF_ENDPOINT__IMAGE_URI": image})
    assert not set(SIZED) & set(env) and "DOGCLF_SERVING__TOP_K" in env


def test_every_priced_and_every_gpu_type_has_vcpus() -> None:
    table = load_prices()
    vcpus = table.vcpus
    priced = {t for usage in table.sagemaker["us-east-1"].values() for t in usage}
    assert priced <= vcpus.keys()
    assert GPU_COUNTS.keys() <= vcpus.keys()
    assert all(vcpus[t] % gpus == 0 for t, gpus in GPU_COUNTS.items())


# ---------------------------------------------------------------- the emulator


def test_worker_count_follows_the_images_torchserve() -> None:
    assert worker_count({}, gpus=0, cpus=2) == 2  # TorchServe: one per CPU
    assert worker_count({}, gpus=4, cpus=48) == 4  # one per GPU
    assert worker_count({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, gpus=0, cpus=2) == 3
    assert worker_count({"TS_DEFAULT_WORKERS_PER_MODEL": "5"}, gpus=0, cpus=2) == 5
    ts = {"SAGEMAKER_MODEL_SERVER_WORKERS": "3", "SAGEMAKER_TS_BATCH_SIZE": "2"}
    assert worker_count(ts, gpus=0, cpus=2) == 1  # the "models" entry's minWorkers
    assert worker_count({**ts, "SAGEMAKER_TS_MIN_WORKERS": "2"}, gpus=0, cpus=2) == 2


def test_the_handler_service_runs_the_workers_and_threads_deploy_sets(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    import urllib.request

    env = clean_env(
        SAGEMAKER_PROGRAM="inference.py", SAGEMAKER_MODEL_SERVER_WORKERS="2", OMP_NUM_THREADS="1"
    )
    log = tmp_path / "log"
    process = start_pytorch_inference(
        trained_model.tar, tmp_path / "endpoint", env=env, log_path=log
    )
    answers: list[int] = []

    def post(image: Path) -> None:
        request = urllib.request.Request(
            process.url + "/invocations", image.read_bytes(), {"Content-Type": "image/jpeg"}
        )
        with urllib.request.urlopen(request) as response:
            answers.append(response.status)

    try:
        images = [image for image, _ in trained_model.test_images()[:4]]
        threads = [threading.Thread(target=post, args=(image,)) for image in images]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        assert process.stop() == 0
    assert answers == [200] * len(images)
    assert "model server: 2 workers (SAGEMAKER_MODEL_SERVER_WORKERS), torch on 1 thread(s)" in (
        log.read_text()
    )
