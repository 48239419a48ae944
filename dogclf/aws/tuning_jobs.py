"""Hyperparameter tuning jobs over the `[hpo]` ranges, and reading back the best job.

The training definition is the same request a single job gets (dogclf/aws/training_jobs.py),
minus the tuned hyperparameters: lr (continuous, log scale), batch size (categorical) and
epochs (integer; with Hyperband, epochs is Hyperband's resource instead).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dogclf.aws.artifacts import head_object
from dogclf.aws.session import AwsContext, aws_errors, call, tag_list
from dogclf.aws.training_jobs import (
    JobKind,
    describe_training_job,
    framework_hyperparameters,
    job_shape,
    program_hyperparameters,
    sagemaker_describe,
    tag_digest,
    wait_job,
)
from dogclf.errors import ConfigError, ResourceFailedError

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig


_OBJECTIVE = "FinalHyperParameterTuningJobObjectiveMetric"
NAME_KEY = "HyperParameterTuningJobName"


def tuning_stamp() -> str:
    return time.strftime("%y%m%d-%H%M%S", time.gmtime())


def tuned_names() -> dict[str, str]:
    """Config field -> the entry point's hyperparameter name ("batch_size" -> "batch-size")."""
    from dogclf.model.hyperparameters import HYPERPARAMETER_FIELDS

    return {f: HYPERPARAMETER_FIELDS[f] for f in ("lr", "batch_size", "epochs")}


def parameter_ranges(cfg: DogclfConfig) -> dict[str, list[dict[str, Any]]]:
    hpo, names = cfg.hpo, tuned_names()
    ranges: dict[str, list[dict[str, Any]]] = {
        "ContinuousParameterRanges": [
            {
                "Name": names["lr"],
                "MinValue": str(hpo.lr_min),
                "MaxValue": str(hpo.lr_max),
                "ScalingType": "Logarithmic",
            }
        ],
        "CategoricalParameterRanges": [
            # JSON-encoded like every hyperparameter (the SDK's as_json_range)
            {"Name": names["batch_size"], "Values": [json.dumps(b) for b in hpo.batch_sizes]}
        ],
        "IntegerParameterRanges": [],
    }
    if hpo.strategy != "Hyperband":
        ranges["IntegerParameterRanges"].append(
            {
                "Name": names["epochs"],
                "MinValue": str(hpo.epochs_min),
                "MaxValue": str(hpo.epochs_max),
                "ScalingType": "Auto",
            }
        )
    return ranges


def tuning_config(cfg: DogclfConfig) -> dict[str, Any]:
    hpo = cfg.hpo
    if hpo.strategy == "Grid":
        raise ConfigError(
            'hpo.strategy = "Grid" takes categorical ranges only, and the learning rate is a '
            "continuous range",
            'use "Bayesian" (the default), "Random" or "Hyperband"',
        )
    config: dict[str, Any] = {
        "Strategy": hpo.strategy,
        "HyperParameterTuningJobObjective": {
            "Type": hpo.objective_type,
            "MetricName": hpo.objective,
        },
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": hpo.max_jobs,
            "MaxParallelTrainingJobs": hpo.max_parallel_jobs,
        },
        "ParameterRanges": parameter_ranges(cfg),
        # Hyperband stops poor jobs itself and refuses the generic early stopping.
        "TrainingJobEarlyStoppingType": "Off" if hpo.strategy == "Hyperband" else "Auto",
    }
    if hpo.strategy == "Hyperband":
        config["StrategyConfig"] = {
            "HyperbandStrategyConfig": {
                "MinResource": hpo.epochs_min,
                "MaxResource": hpo.epochs_max,
            }
        }
    return config


def tuning_request(
    cfg: DogclfConfig, *, name: str, image: str, source_uri: str, role: str, region: str
) -> dict[str, Any]:
    tuned = set(tuned_names().values())
    static = {
        k: v
        for k, v in {
            **program_hyperparameters(cfg),
            **framework_hyperparameters(cfg, source_uri, region, name),
        }.items()
        if k not in tuned
    }
    if cfg.hpo.strategy == "Hyperband":  # the most epochs a job may run; Hyperband stops early
        static[tuned_names()["epochs"]] = json.dumps(cfg.hpo.epochs_max)
    definition: dict[str, Any] = {
        "StaticHyperParameters": static,
        "RoleArn": "",
        **job_shape(cfg, name),
    }
    definition["RoleArn"] = role
    definition["AlgorithmSpecification"]["TrainingImage"] = image
    request = {
        NAME_KEY: name,
        "HyperParameterTuningJobConfig": tuning_config(cfg),
        "TrainingJobDefinition": definition,
        "Tags": tag_list(cfg),
    }
    return tag_digest(request, NAME_KEY)


def create_tuning_job(ctx: AwsContext, request: dict[str, Any]) -> str:
    name = str(request["HyperParameterTuningJobName"])
    call(
        f"create tuning job {name}",
        ctx.client("sagemaker").create_hyper_parameter_tuning_job,
        **request,
    )
    return name


def describe_tuning_job(ctx: AwsContext, name: str) -> dict[str, Any]:
    operation = "describe_hyper_parameter_tuning_job"
    return sagemaker_describe(
        ctx, f"tuning job {name}", operation, HyperParameterTuningJobName=name
    )


def tuning_status_text(description: dict[str, Any]) -> str:
    counts = description.get("TrainingJobStatusCounters", {})
    best = description.get("BestTrainingJob", {}).get("FinalHyperParameterTuningJobObjectiveMetric")
    text = (
        f"{description['HyperParameterTuningJobStatus']}: {counts.get('Completed', 0)} done, "
        f"{counts.get('InProgress', 0)} running"
    )
    failed = counts.get("NonRetryableError", 0) + counts.get("RetryableError", 0)
    if failed:
        text += f", {failed} failed"
    if best:
        text += f"; best {best['MetricName']}={best['Value']:.4g}"
    return text


TUNING_JOB = JobKind(
    "tuning job", describe_tuning_job, "HyperParameterTuningJobStatus", tuning_status_text
)


def wait_tuning_job(
    ctx: AwsContext,
    name: str,
    *,
    poll_interval: float = 60.0,
    on_status: Callable[[str], None] = lambda text: None,
) -> dict[str, Any]:
    return wait_job(ctx, name, TUNING_JOB, poll_interval=poll_interval, on_status=on_status)


def unquote(value: str) -> str:
    """SageMaker hands back hyperparameters JSON-quoted when they went in quoted ('"64"')."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        return decoded if isinstance(decoded, str) else value
    return value


@dataclass
class BestJob:
    tuning_job: str
    training_job: str
    hyperparameters: dict[str, str]
    objective: dict[str, Any]
    model_data: str
    description: dict[str, Any]
    # Better trials passed over: stopped (early stopping, Hyperband) before any model was
    # written, so their model.tar.gz is missing and `latest` must not point at it.
    without_model: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Every field but the full description, `training_job` as `best_training_job`."""
        shown = {k: v for k, v in vars(self).items() if k != "description"}
        return {"best_training_job" if k == "training_job" else k: v for k, v in shown.items()}


def best_job(ctx: AwsContext, description: dict[str, Any]) -> BestJob:
    """The best trial that left a model: SageMaker's BestTrainingJob, else (its model.tar.gz
    is missing) the next best by the objective whose model exists."""
    name = description["HyperParameterTuningJobName"]
    status = description["HyperParameterTuningJobStatus"]
    best = description.get("BestTrainingJob")
    if status == "Failed" or not best:
        reason = description.get("FailureReason") or "no training job reported the objective"
        raise ResourceFailedError(
            f"tuning job {name} {status.lower()}: {reason}",
            "look at its training jobs: aws sagemaker list-training-jobs-for-hyper-parameter-"
            f"tuning-job --hyper-parameter-tuning-job-name {name}",
        )
    without_model: list[str] = []
    for trial in [best, *ranked_trials(ctx, description)]:
        if trial["TrainingJobName"] in without_model:
            continue
        job = describe_training_job(ctx, trial["TrainingJobName"])
        model_data = job.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
        if model_data and head_object(ctx, model_data) is not None:
            return BestJob(
                tuning_job=name,
                training_job=trial["TrainingJobName"],
                hyperparameters={
                    k: unquote(v) for k, v in trial.get("TunedHyperParameters", {}).items()
                },
                objective=dict(trial.get("FinalHyperParameterTuningJobObjectiveMetric", {})),
                model_data=model_data,
                description=job,
                without_model=without_model,
            )
        without_model.append(trial["TrainingJobName"])
    raise ResourceFailedError(
        f"tuning job {name}: no training job left a model.tar.gz (checked "
        f"{', '.join(without_model)}); the latest model pointer is unchanged",
        "its jobs were stopped before writing a model: run `dogclf train-sagemaker` with the "
        "best hyperparameters, or tune again with more epochs",
    )


def ranked_trials(ctx: AwsContext, description: dict[str, Any]) -> list[dict[str, Any]]:
    """The tuning job's trials that reported the objective, best first."""
    objective = description["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    order = "Ascending" if objective.get("Type") == "Minimize" else "Descending"
    pages = ctx.client("sagemaker").get_paginator(
        "list_training_jobs_for_hyper_parameter_tuning_job"
    )
    trials: list[dict[str, Any]] = []
    with aws_errors(f"list the training jobs of {description['HyperParameterTuningJobName']}"):
        for page in pages.paginate(
            HyperParameterTuningJobName=description["HyperParameterTuningJobName"],
            SortBy="FinalObjectiveMetricValue",
            SortOrder=order,
        ):
            trials += [t for t in page["TrainingJobSummaries"] if _OBJECTIVE in t]
    return trials
