"""Runs a submitted CreateTrainingJob request here, as the SageMaker PyTorch container would.

The embedded emulator (dogclf/local/moto_ext/training_runtime.py) hands each new training job to
`execute_training_job` when its training runtime is enabled (`dogclf demo` does): the
job's source bundle (`sagemaker_submit_directory`) and channels are downloaded from the
emulated S3, `sagemaker_program` runs under the container contract of
dogclf/local/runner.py, and `model.tar.gz` goes to `S3OutputPath/<job>/output/` in the
emulated S3, where SageMaker puts it. So `train-sagemaker` against the emulator trains a
real model from exactly the request it sent, not from the local config.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogclf.aws.artifacts import download_file, upload_file
from dogclf.aws.s3_sync import download_prefix
from dogclf.aws.session import AwsContext
from dogclf.local.runner import JobSpec, run_job

DEFAULT_MAX_RUN = 86400


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


def _unpack_source(ctx: AwsContext, uri: str, job_dir: Path) -> Path:
    archive = download_file(ctx, uri, job_dir / "sourcedir.tar.gz")
    code_dir = job_dir / "code"
    code_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(code_dir, filter="data")  # refuses absolute paths and `..`
    return code_dir


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
    code_dir = _unpack_source(ctx, hyperparameters["sagemaker_submit_directory"], job_dir)
    channels: dict[str, Path] = {}
    for channel in request.get("InputDataConfig") or []:
        target = job_dir / "channels" / channel["ChannelName"]
        download_prefix(ctx, channel["DataSource"]["S3DataSource"]["S3Uri"], target, workers=8)
        channels[channel["ChannelName"]] = target
    resources = request.get("ResourceConfig") or {}
    spec = JobSpec(
        hyperparameters=hyperparameters,
        instance_type=str(resources.get("InstanceType", "ml.m5.large")),
        instance_count=int(resources.get("InstanceCount", 1)),
        max_run=int(
            (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUN)
        ),
        job_name=name,
        code_dir=code_dir,
        program=hyperparameters.get("sagemaker_program"),
    )
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        on_log(line)

    result = run_job(spec, channels, Path(workdir), on_log=log)
    output = str((request.get("OutputDataConfig") or {})["S3OutputPath"]).rstrip("/")
    model_data = upload_file(ctx, result.model_tar, f"{output}/{name}/output/model.tar.gz")
    definitions = (request.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    return JobOutcome(model_data=model_data, metrics=final_metrics(definitions, lines))
