"""SageMaker training and tuning jobs of this project/stage still running, and stopping them
(teardown stops them all; `dogclf stop` one: dogclf/aws/stop_jobs.py).

Finished jobs stay on SageMaker as history (they cannot be deleted and cost nothing), so
`status` shows and `teardown` stops only those InProgress or Stopping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dogclf.aws.session import AwsContext, aws_errors, call, delete_step, error_code
from dogclf.plan import Step

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

IN_FLIGHT = ("InProgress", "Stopping")


@dataclass(frozen=True)
class JobKind:
    resource: str  # as plans and `status` name it
    list_op: str
    summaries: str  # the key of the list call's answer
    name_key: str
    arn_key: str
    status_key: str
    stop_op: str


TRAINING = JobKind(
    "training job",
    "list_training_jobs",
    "TrainingJobSummaries",
    "TrainingJobName",
    "TrainingJobArn",
    "TrainingJobStatus",
    "stop_training_job",
)
TUNING = JobKind(
    "tuning job",
    "list_hyper_parameter_tuning_jobs",
    "HyperParameterTuningJobSummaries",
    "HyperParameterTuningJobName",
    "HyperParameterTuningJobArn",
    "HyperParameterTuningJobStatus",
    "stop_hyper_parameter_tuning_job",
)


def is_ours(ctx: AwsContext, cfg: DogclfConfig, arn: str) -> bool:
    """Tagged with this project and stage (a name prefix alone could be another stage's)."""
    tags = call("read tags", ctx.client("sagemaker").list_tags, ResourceArn=arn).get("Tags", [])
    found = {t["Key"]: t["Value"] for t in tags}
    return found.get("dogclf:project") == cfg.project and found.get("dogclf:stage") == cfg.stage


def in_flight(ctx: AwsContext, cfg: DogclfConfig, kind: JobKind) -> list[dict[str, Any]]:
    """The list call's summaries of our jobs of this kind that are still running."""
    pages = ctx.client("sagemaker").get_paginator(kind.list_op)
    found = []
    with aws_errors(f"list {kind.resource}s in flight"):
        for status in IN_FLIGHT:
            for page in pages.paginate(NameContains=cfg.names.base, StatusEquals=status):
                found += [j for j in page[kind.summaries] if is_ours(ctx, cfg, j[kind.arn_key])]
    return found


def training_jobs_in_flight(ctx: AwsContext, cfg: DogclfConfig) -> list[dict[str, Any]]:
    """Full descriptions: the summaries lack the resources and the tuning job's ARN."""
    describe = ctx.client("sagemaker").describe_training_job
    return [
        call("describe training job", describe, TrainingJobName=j["TrainingJobName"])
        for j in in_flight(ctx, cfg, TRAINING)
    ]


def _already_ended(exc: BaseException) -> bool:
    """SageMaker refuses to stop a job that ended (or is ending) on its own: nothing to do."""
    return error_code(exc) == "ValidationException" and "status" in str(exc)


def stop_step(ctx: AwsContext, kind: JobKind, job: dict[str, Any], message: str) -> Step:
    name = job[kind.name_key]
    return delete_step(
        kind.resource,
        name,
        message,
        f"stop the {kind.resource}",
        getattr(ctx.client("sagemaker"), kind.stop_op),
        done_if=_already_ended,
        **{kind.name_key: name},
    )


def training_stop_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    message = "stop (its logs and any model already written stay)"
    return [
        stop_step(ctx, TRAINING, job, message)
        for job in training_jobs_in_flight(ctx, cfg)
        # A tuning job's own jobs stop with it (the tuning kind runs first).
        if job["TrainingJobStatus"] == "InProgress" and not job.get("TuningJobArn")
    ]


def tuning_stop_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    message = "stop it and its running training jobs"
    return [
        stop_step(ctx, TUNING, job, message)
        for job in in_flight(ctx, cfg, TUNING)
        if job["HyperParameterTuningJobStatus"] == "InProgress"
    ]
