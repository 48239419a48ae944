"""`dogclf stop [JOB | latest]`: the plan that stops one training or tuning job of this
project/stage (a tuning job stops its running training jobs with it).

StopTrainingJob sends the program SIGTERM and ends the job 120 s later; SageMaker then
uploads /opt/ml/model (the training core saves its best model so far on SIGTERM), so a
stopped job keeps a model. Stopping a job that already ended, or is stopping, is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dogclf.aws.jobs_in_flight import TRAINING, TUNING, JobKind, in_flight, is_ours, stop_step
from dogclf.aws.session import AwsContext, get_or_none
from dogclf.errors import DogclfError, NotFoundError
from dogclf.plan import Action, Plan

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

LATEST = "latest"
DESCRIBE = {TRAINING: "describe_training_job", TUNING: "describe_hyper_parameter_tuning_job"}


@dataclass(frozen=True)
class Target:
    kind: JobKind
    name: str
    status: str  # before the stop

    def as_dict(self) -> dict[str, str]:
        return {"job": self.name, "kind": self.kind.resource, "status": self.status}


def newest_in_flight(ctx: AwsContext, cfg: DogclfConfig) -> Target | None:
    """The project's newest InProgress job: a tuning job, or a training job of its own
    (one a tuning job started stops with its tuning job)."""
    found: list[tuple[Any, Target]] = []
    for kind in (TUNING, TRAINING):
        for job in in_flight(ctx, cfg, kind):
            if job[kind.status_key] != "InProgress":
                continue
            if kind is TRAINING and _describe(ctx, kind, job[kind.name_key]).get("TuningJobArn"):
                continue
            found.append((job["CreationTime"], Target(kind, job[kind.name_key], "InProgress")))
    return max(found, key=lambda pair: pair[0])[1] if found else None


def find_job(ctx: AwsContext, cfg: DogclfConfig, name: str) -> Target:
    """The tuning or training job called `name`, if it is this project/stage's."""
    for kind in (TUNING, TRAINING):
        job = _describe(ctx, kind, name)
        if not job:
            continue
        if not is_ours(ctx, cfg, job[kind.arn_key]):
            raise DogclfError(
                f"{kind.resource} {name} is not one of project {cfg.project!r}, stage "
                f"{cfg.stage!r} (its dogclf:project / dogclf:stage tags differ)",
                "stop it with the aws CLI if it is yours, or pick the right --config",
            )
        return Target(kind, name, str(job[kind.status_key]))
    raise NotFoundError(
        f"no training or tuning job named {name} in {ctx.region}",
        "`dogclf status` lists this project's jobs in flight; `dogclf stop latest` stops the newest",
    )


def _describe(ctx: AwsContext, kind: JobKind, name: str) -> dict[str, Any]:
    describe = getattr(ctx.client("sagemaker"), DESCRIBE[kind])
    found = get_or_none(f"describe {kind.resource} {name}", describe, **{kind.name_key: name})
    return dict(found or {})


def plan_stop(ctx: AwsContext, cfg: DogclfConfig, job: str) -> tuple[Plan, Target | None]:
    """One step: stop the job (InProgress), or a no-op saying why there is nothing to do."""
    plan = Plan(f"stop {job}")
    target = newest_in_flight(ctx, cfg) if job == LATEST else find_job(ctx, cfg, job)
    if target is None:
        plan.add(Action.NOOP, "job", LATEST, f"no job of {cfg.names.base} is running")
        return plan, None
    if target.status != "InProgress":
        plan.add(Action.NOOP, target.kind.resource, target.name, f"already {target.status}")
        return plan, target
    message = "stop it and its running training jobs" if target.kind is TUNING else "stop it"
    plan.steps.append(
        stop_step(ctx, target.kind, {target.kind.name_key: target.name}, message + _KEPT)
    )
    return plan, target


_KEPT = " (SIGTERM: the model so far is saved and uploaded)"


def status_now(ctx: AwsContext, target: Target) -> str:
    return str(_describe(ctx, target.kind, target.name).get(target.kind.status_key, "unknown"))
