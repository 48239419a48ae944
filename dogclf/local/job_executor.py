"""Runs a submitted CreateTrainingJob request here, through AWS's PyTorch training launcher.

The embedded emulator (dogclf/local/moto_ext/training_runtime.py) hands each new training job to
`execute_training_job` when its training runtime is enabled (`dogclf demo` does): the
job's channels and source bundle (`sagemaker_submit_directory`) are downloaded from the
emulated S3, the hosts run the launcher on exactly the request's hyperparameters
(dogclf/local/runner.py), and `model.tar.gz` goes to `S3OutputPath/<job>/output/` in the
emulated S3, where SageMaker puts it. So `train-sagemaker` against the emulator trains a
real model from exactly the request it sent, not from the local config.

The bundle is unpacked into each host's code/ beforehand (the launcher then skips its own
download: sagemaker_training/files.py download_and_extract) because the hosts' private
network (job_network.py) has no route to the emulator.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogclf.aws.artifacts import download_file, upload_file
from dogclf.aws.s3_sync import download_prefix
from dogclf.aws.session import AwsContext
from dogclf.local.runner import DEFAULT_MAX_RUN, JobSpec, run_job
from dogclf.local.sagemaker_container import input_data_config
from dogclf.model.hyperparameters import decode_hyperparameter


@dataclass
class JobOutcome:
    model_data: str
    metrics: dict[str, float]


def final_metrics(definitions: list[dict[str, str]], lines: list[str]) -> dict[str, float]:
    """What SageMaker reports as FinalMetricDataList: each definition's last match."""
    found: dict[str, float] = {}
    for definition in definitions:
        regex = re.compile(definition["Regex"])
        for line in lines:
            for match in regex.finditer(line):
                try:
                    found[definition["Name"]] = float(match.group(1))
                except (IndexError, ValueError):
                    continue
    return found


def execute_training_job(
    ctx: AwsContext,
    request: dict[str, Any],
    workdir: Path,
    *,
    on_log: Callable[[str], None],
) -> JobOutcome:
    """Download, run and upload one job; raises DogclfError when the job fails."""
    name = str(request["TrainingJobName"])
    hyperparameters = {str(k): str(v) for k, v in (request.get("HyperParameters") or {}).items()}
    job_dir = Path(workdir).resolve() / name
    source = decode_hyperparameter(hyperparameters["sagemaker_submit_directory"])
    archive = download_file(ctx, str(source), job_dir / "sourcedir.tar.gz")
    channels: dict[str, Path] = {}
    for channel in request.get("InputDataConfig") or []:
        target = job_dir / "channels" / channel["ChannelName"]
        download_prefix(ctx, channel["DataSource"]["S3DataSource"]["S3Uri"], target, workers=8)
        channels[channel["ChannelName"]] = target
    checkpoints = request.get("CheckpointConfig") or {}
    store = job_dir / "checkpoint-s3"
    synced = _download_checkpoints(ctx, checkpoints.get("S3Uri"), store)
    resources = request.get("ResourceConfig") or {}
    stopping = request.get("StoppingCondition") or {}
    spec = JobSpec(
        hyperparameters=hyperparameters,
        channels=channels,
        input_data_config=input_data_config(request.get("InputDataConfig") or []),
        instance_type=str(resources.get("InstanceType", "ml.m5.large")),
        instance_count=int(resources.get("InstanceCount", 1)),
        max_run=int(stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUN)),
        job_name=name,
        code_archive=archive,
        checkpoint_store=store if checkpoints.get("S3Uri") else None,
    )
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        on_log(line)

    try:
        result = run_job(spec, Path(workdir), on_log=log)
    finally:  # SageMaker uploads the checkpoints of a failed or stopped job too
        _upload_checkpoints(ctx, checkpoints.get("S3Uri"), store, synced)
    output = str((request.get("OutputDataConfig") or {})["S3OutputPath"]).rstrip("/")
    model_data = upload_file(ctx, result.model_tar, f"{output}/{name}/output/model.tar.gz")
    definitions = (request.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    return JobOutcome(model_data=model_data, metrics=final_metrics(definitions, lines))


Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns)


def _snapshot(folder: Path) -> Snapshot:
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _download_checkpoints(ctx: AwsContext, uri: str | None, store: Path) -> Snapshot:
    """CheckpointConfig.S3Uri -> the job's store, as SageMaker fills LocalPath at start
    (what earlier jobs naming the same URI left: a tuning job's earlier trials, a spot
    job's last checkpoint); what is there afterwards."""
    if uri:
        store.mkdir(parents=True, exist_ok=True)
        download_prefix(ctx, uri, store, workers=8)
    return _snapshot(store)


def _upload_checkpoints(ctx: AwsContext, uri: str | None, store: Path, before: Snapshot) -> None:
    """The files the job added or changed under LocalPath -> the S3 URI."""
    if not uri:
        return
    for relative, stamp in sorted(_snapshot(store).items()):
        if before.get(relative) != stamp:
            upload_file(ctx, store / relative, uri.rstrip("/") + "/" + relative)
