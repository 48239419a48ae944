"""Training jobs that really run against the emulator, and moto 5.2.5's CreateTrainingJob fixed.

moto 5.2.5 marks a new training job Completed at once, runs nothing, and replaces the
caller's AlgorithmSpecification.MetricDefinitions with a sample of its own. This module
overrides CreateTrainingJob so that:

- the caller's MetricDefinitions are kept (DescribeTrainingJob returns them, and the
  runtime parses the job's metrics with them);
- a job that takes a script (sagemaker_lifecycle.py) starts in its first status, with the
  script's log lines and metrics;
- otherwise, once the training runtime is on for the account/region, the job starts
  InProgress and is executed, one at a time, by dogclf/local/job_executor.py in a thread of
  this server (AWS's PyTorch training launcher on every host): its output lines become the
  job's CloudWatch log stream, its model.tar.gz lands in the emulated S3, and it ends
  Completed with FinalMetricDataList parsed by its own MetricDefinitions, or Failed with the
  FailureReason SageMaker would give (from output/failure). A tuning job's children are not
  run (they get made-up metrics, tuning.py).

The runtime is opt-in (`dogclf demo` turns it on) through a route this module adds:
    POST /moto-api/dogclf/sagemaker/training-runtime {"workdir": "/tmp/jobs", "region": ...}
The setting lives on the backend, so /moto-api/reset forgets it.
"""

from __future__ import annotations

from typing import Any

from dogclf.local.moto_ext import routes
from dogclf.local.moto_ext.sagemaker_lifecycle import (
    sagemaker_state,
    set_final_metrics,
    set_training_status,
    start_script,
    write_job_logs,
)

TRAINING_RUNTIME_PATH = "/moto-api/dogclf/sagemaker/training-runtime"


def enable_training_runtime(emulator_url: str, workdir: str, *, region: str = "us-east-1") -> None:
    """Client side of the training runtime route (demo, tests): one POST over HTTP."""
    routes.post_json(emulator_url, TRAINING_RUNTIME_PATH, {"workdir": workdir, "region": region})


def runtime_enabled(backend: Any) -> bool:
    """Whether this account/region's training jobs really run (the route turned it on)."""
    return _training_runtime(backend) is not None


def _training_runtime(backend: Any) -> dict[str, Any] | None:
    runtime: dict[str, Any] | None = backend.__dict__.get("_dogclf_training_runtime")
    return runtime


def _enable(body: dict[str, Any], moto_url: str) -> routes.Response:
    from concurrent.futures import ThreadPoolExecutor

    from moto.sagemaker.models import sagemaker_backends

    if not body.get("workdir"):
        return routes.reply(400, {"Error": "workdir is required"})
    account, region = routes.account_and_region(body)
    sagemaker_backends[account][region].__dict__["_dogclf_training_runtime"] = {
        "moto_url": moto_url,
        "workdir": str(body["workdir"]),
        "region": region,
        # One job at a time: a 2-core machine gains nothing from two trainings at once.
        "pool": ThreadPoolExecutor(max_workers=1, thread_name_prefix="dogclf-training-job"),
    }
    return routes.reply(200, {"status": "ok"})


def _start_training_run(backend: Any, job: Any, runtime: dict[str, Any]) -> None:
    set_training_status(job, "InProgress", None)
    job.secondary_status = "Starting"
    job.final_metric_data_list = []
    request = {
        "TrainingJobName": job.training_job_name,
        "HyperParameters": dict(job.hyper_parameters or {}),
        "AlgorithmSpecification": dict(job.algorithm_specification or {}),
        "InputDataConfig": list(job.input_data_config or []),
        "OutputDataConfig": dict(job.output_data_config or {}),
        "ResourceConfig": dict(job.resource_config or {}),
        "StoppingCondition": dict(job.stopping_condition or {}),
        "CheckpointConfig": dict(job.checkpoint_config or {}),
    }
    runtime["pool"].submit(_run_training_job, backend, job, request, runtime)


def _run_training_job(
    backend: Any, job: Any, request: dict[str, Any], runtime: dict[str, Any]
) -> None:
    import time
    from pathlib import Path

    from dogclf.aws.session import AwsContext
    from dogclf.local.emulator import DUMMY_CREDENTIALS
    from dogclf.local.job_executor import execute_training_job
    from dogclf.local.runner import JobFailedError

    started = int(time.time())
    if job.training_job_status != "InProgress":  # stopped while it waited for the pool
        return

    def on_log(line: str) -> None:
        host, text = "algo-1", line
        if line.startswith("[algo-") and "] " in line:  # a multi-host job's "[algo-2] ..."
            host, text = line[1:].split("] ", 1)
        write_job_logs(backend, job.training_job_name, [text], host=host)

    job.secondary_status = "Training"
    try:
        ctx = AwsContext(
            region=runtime["region"],
            endpoint_url=runtime["moto_url"],
            credentials=DUMMY_CREDENTIALS,
        )
        outcome = execute_training_job(ctx, request, Path(runtime["workdir"]), on_log=on_log)
    except JobFailedError as exc:  # the program's own failure, worded as SageMaker does
        _end_run(job, "Failed", exc.failure_reason)
        return
    except Exception as exc:  # the data or code could not be fetched or stored
        reason = str(getattr(exc, "message", exc)).splitlines()[0]
        _end_run(job, "Failed", f"ClientError: {reason}")
        return
    # A stopped job's /opt/ml/model is uploaded too: "You can use the model artifacts that
    # are saved when SageMaker stops a training job to create a model" (StopTrainingJob).
    job.model_artifacts = {"S3ModelArtifacts": outcome.model_data}
    set_final_metrics(job, outcome.metrics)
    _end_run(job, "Completed", None)
    job.billable_time_in_seconds = max(1, int(time.time()) - started)


def _end_run(job: Any, status: str, reason: str | None) -> None:
    """The run's end as its status: a job StopTrainingJob put in Stopping ends Stopped."""
    if job.training_job_status == "Stopping":
        set_training_status(job, "Stopped", None)
    elif job.training_job_status == "InProgress":
        set_training_status(job, status, reason)


def _patch_create_training_job() -> None:
    from moto.sagemaker.models import SageMakerModelBackend

    create = SageMakerModelBackend.create_training_job

    def create_training_job(self: Any, **kwargs: Any) -> Any:
        given = (kwargs.get("algorithm_specification") or {}).get("MetricDefinitions")
        job = create(self, **kwargs)
        job.algorithm_specification["MetricDefinitions"] = given or []
        script = start_script(self, "training-job", job.training_job_name)
        runtime = _training_runtime(self)
        if script is not None:
            write_job_logs(self, job.training_job_name, script["log_lines"])
            set_final_metrics(job, script["metrics"])
        elif runtime and not sagemaker_state(self).get("in_tuning"):
            _start_training_run(self, job, runtime)
        return job

    SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign,assignment]


def install() -> None:
    routes.add_post_route(TRAINING_RUNTIME_PATH, 'POST {"workdir": "..."}', _enable)
    _patch_create_training_job()
