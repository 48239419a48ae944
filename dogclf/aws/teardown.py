"""`teardown`: delete what this project/stage owns, in dependency order, then check that
nothing is left, listing each service again and sweeping by tag."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dogclf.aws import inventory
from dogclf.aws.session import ACCESS_DENIED_CODES, AwsContext, error_code
from dogclf.plan import Action, Plan

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

# Tagged things a teardown keeps on purpose: SageMaker keeps finished jobs as history
# (they cannot be deleted and cost nothing), and the bucket may hold other stages.
KEPT_ARN_PARTS = (":training-job/", ":hyper-parameter-tuning-job/", ":s3:::")


def plan_teardown(ctx: AwsContext, cfg: DogclfConfig, *, data: bool) -> Plan:
    plan = Plan(f"teardown {cfg.project}/{cfg.stage}" + (" (with data)" if data else ""))
    plan.steps += inventory.delete_steps(ctx, cfg, opt_in={"data"} if data else set())
    if not plan.steps:
        plan.add(Action.NOOP, "project", cfg.names.base, "nothing to delete")
    return plan


def tagged_leftovers(ctx: AwsContext, cfg: DogclfConfig) -> list[str] | None:
    """ARNs still tagged with this project/stage (bar KEPT_ARN_PARTS); None if the
    Resource Groups Tagging API is not available to this identity."""
    import botocore.exceptions

    tagging = ctx.client("resourcegroupstaggingapi")
    arns: list[str] = []
    try:
        for page in tagging.get_paginator("get_resources").paginate(
            TagFilters=[
                {"Key": "dogclf:project", "Values": [cfg.project]},
                {"Key": "dogclf:stage", "Values": [cfg.stage]},
            ]
        ):
            arns += [r["ResourceARN"] for r in page.get("ResourceTagMappingList", [])]
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in ACCESS_DENIED_CODES:
            return None
        raise
    return sorted(a for a in arns if not any(part in a for part in KEPT_ARN_PARTS))


def leftovers(ctx: AwsContext, cfg: DogclfConfig, *, data: bool) -> dict[str, Any]:
    """What a second teardown would still do, and what is still tagged as ours."""
    again = plan_teardown(ctx, cfg, data=data)
    return {
        "steps": [s.as_dict() for s in again.changes],
        "tagged": tagged_leftovers(ctx, cfg),
    }
