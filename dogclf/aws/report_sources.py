"""What `dogclf report JOB | TUNING-JOB` reads from SageMaker: a training job's model.tar.gz
(its ModelArtifacts), or a tuning job's trials as plain data for the tuning page
(dogclf/training/report.py tuning_html). Returns data; prints nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dogclf.aws.artifacts import head_object
from dogclf.aws.session import AwsContext, aws_errors, get_or_none
from dogclf.aws.tuning_jobs import unquote
from dogclf.errors import DogclfError, NotFoundError

_OBJECTIVE = "FinalHyperParameterTuningJobObjectiveMetric"
RANGE_KINDS = {
    "ContinuousParameterRanges": "continuous",
    "IntegerParameterRanges": "integer",
    "CategoricalParameterRanges": "categorical",
}


@dataclass
class ReportSource:
    kind: str  # "training job" | "tuning job"
    name: str
    model_data: str | None = None  # a training job's s3://.../model.tar.gz
    tuning: dict[str, Any] = field(default_factory=dict)  # a tuning job's page data


def find_report_source(ctx: AwsContext, name: str) -> ReportSource:
    """The tuning job or training job called `name` (tuning first, as `dogclf stop`)."""
    sm = ctx.client("sagemaker")
    tuning = get_or_none(
        f"describe tuning job {name}",
        sm.describe_hyper_parameter_tuning_job,
        HyperParameterTuningJobName=name,
    )
    if tuning is not None:
        return ReportSource("tuning job", name, tuning=tuning_data(ctx, dict(tuning)))
    job = get_or_none(
        f"describe training job {name}", sm.describe_training_job, TrainingJobName=name
    )
    if job is not None:
        return ReportSource("training job", name, model_data=job_model(ctx, dict(job)))
    raise NotFoundError(
        f"no training or tuning job named {name} in {ctx.region}",
        "pass a job name from `dogclf status` or the SageMaker console, a model dir or "
        "model.tar.gz, or `latest`",
    )


def job_model(ctx: AwsContext, job: dict[str, Any]) -> str:
    """The training job's model.tar.gz URI, once it is in S3."""
    name, status = job["TrainingJobName"], job["TrainingJobStatus"]
    uri = str(job.get("ModelArtifacts", {}).get("S3ModelArtifacts", ""))
    if status in ("InProgress", "Stopping"):
        raise DogclfError(
            f"training job {name} is {status}: its model, and the report in it, land in S3 "
            "when it ends",
            f"wait for it (`dogclf status`), then run `dogclf report {name}` again",
        )
    if not uri or head_object(ctx, uri) is None:
        reason = job.get("FailureReason") or f"it ended {status} without one"
        raise NotFoundError(
            f"training job {name} left no model.tar.gz in S3 ({reason})",
            "a job that failed before its first epoch writes no model; look at its logs",
        )
    return uri


def tuning_data(ctx: AwsContext, description: dict[str, Any]) -> dict[str, Any]:
    """name, status, objective {metric, type}, parameters {name: {kind, scale | values}},
    trials [{name, status, objective, hyperparameters}] best first, best (trial name)."""
    config = description["HyperParameterTuningJobConfig"]
    objective = config["HyperParameterTuningJobObjective"]
    parameters: dict[str, dict[str, Any]] = {}
    for key, kind in RANGE_KINDS.items():
        for spec in config.get("ParameterRanges", {}).get(key, []):
            parameters[spec["Name"]] = {"kind": kind, "scale": spec.get("ScalingType", "Auto")}
            if kind == "categorical":
                parameters[spec["Name"]]["values"] = [unquote(v) for v in spec["Values"]]
    trials = [_trial(summary) for summary in _summaries(ctx, description)]
    lower_wins = objective.get("Type") == "Minimize"
    trials.sort(key=lambda t: (t["objective"] is None, _rank(t["objective"], lower_wins)))
    return {
        "name": description["HyperParameterTuningJobName"],
        "status": description["HyperParameterTuningJobStatus"],
        "objective": {"metric": objective["MetricName"], "type": objective.get("Type", "")},
        "parameters": parameters,
        "trials": trials,
        "best": description.get("BestTrainingJob", {}).get("TrainingJobName"),
    }


def _rank(value: float | None, lower_wins: bool) -> float:
    if value is None:
        return 0.0
    return value if lower_wins else -value


def _trial(summary: dict[str, Any]) -> dict[str, Any]:
    value = summary.get(_OBJECTIVE, {}).get("Value")
    return {
        "name": summary["TrainingJobName"],
        "status": summary["TrainingJobStatus"],
        "objective": None if value is None else float(value),
        "hyperparameters": {
            k: unquote(v) for k, v in summary.get("TunedHyperParameters", {}).items()
        },
    }


def _summaries(ctx: AwsContext, description: dict[str, Any]) -> list[dict[str, Any]]:
    name = description["HyperParameterTuningJobName"]
    pages = ctx.client("sagemaker").get_paginator(
        "list_training_jobs_for_hyper_parameter_tuning_job"
    )
    found: list[dict[str, Any]] = []
    with aws_errors(f"list the training jobs of {name}"):
        for page in pages.paginate(HyperParameterTuningJobName=name):
            found += page["TrainingJobSummaries"]
    return found
