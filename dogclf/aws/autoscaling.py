"""Endpoint auto-scaling: a scalable target on the variant's DesiredInstanceCount and a
target-tracking policy on SageMakerVariantInvocationsPerInstance.

Both calls are upserts in Application Auto Scaling, so an update is the same call with new
numbers; the plan compares what is registered with the config to say create / update /
no-op. `deploy` pauses scaling (`pause` / `resume`) around an instance-type change, which
AWS refuses on a registered variant, and takes scaling off a variant an update removes
(a rename of `endpoint.variant_name`) in steps of the plan before the update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dogclf.aws.session import AwsContext, aws_errors, call, delete_step
from dogclf.errors import NotFoundError
from dogclf.plan import Action, Plan, Step

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


def resource_id(cfg: DogclfConfig) -> str:
    return cfg.names.scalable_resource_id(cfg.endpoint.variant_name)


def _dimension(cfg: DogclfConfig) -> dict[str, Any]:
    """What every Application Auto Scaling call names: the variant's instance count."""
    return {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": resource_id(cfg),
        "ScalableDimension": DIMENSION,
    }


def policy_configuration(cfg: DogclfConfig) -> dict[str, Any]:
    a = cfg.autoscaling
    return {
        "TargetValue": float(a.target_invocations_per_instance),
        "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
        "ScaleInCooldown": a.scale_in_cooldown,
        "ScaleOutCooldown": a.scale_out_cooldown,
        "DisableScaleIn": False,
    }


def current_target(ctx: AwsContext, cfg: DogclfConfig) -> dict[str, Any] | None:
    with aws_errors("describe the endpoint's scalable target"):
        found = ctx.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace=NAMESPACE, ResourceIds=[resource_id(cfg)], ScalableDimension=DIMENSION
        )["ScalableTargets"]
    return found[0] if found else None


def current_policy(ctx: AwsContext, cfg: DogclfConfig) -> dict[str, Any] | None:
    with aws_errors("describe the endpoint's scaling policy"):
        found = ctx.client("application-autoscaling").describe_scaling_policies(
            PolicyNames=[cfg.names.scaling_policy], **_dimension(cfg)
        )["ScalingPolicies"]
    return found[0] if found else None


def _policy_differences(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    have = current.get("TargetTrackingScalingPolicyConfiguration", {})
    changes = []
    for key in ("TargetValue", "ScaleInCooldown", "ScaleOutCooldown"):
        if have.get(key) is None or float(have[key]) != float(wanted[key]):
            changes.append(f"{key} {have.get(key)} -> {wanted[key]}")
    metric = have.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType")
    if metric != METRIC:
        changes.append(f"metric {metric} -> {METRIC}")
    if bool(have.get("DisableScaleIn", False)):
        changes.append("DisableScaleIn true -> false")
    return changes


def register_target(ctx: AwsContext, cfg: DogclfConfig, *, with_tags: bool) -> Any:
    a, rid = cfg.autoscaling, resource_id(cfg)
    kwargs: dict[str, Any] = {
        **_dimension(cfg),
        "MinCapacity": a.min_instances,
        "MaxCapacity": a.max_instances,
    }
    if with_tags:  # tags go on at registration; a later update keeps them
        kwargs["Tags"] = dict(cfg.tags)
    return call(
        f"register scalable target {rid}",
        ctx.client("application-autoscaling").register_scalable_target,
        **kwargs,
    )


def put_policy(ctx: AwsContext, cfg: DogclfConfig) -> Any:
    return call(
        f"put scaling policy {cfg.names.scaling_policy}",
        ctx.client("application-autoscaling").put_scaling_policy,
        PolicyName=cfg.names.scaling_policy,
        PolicyType="TargetTrackingScaling",
        **_dimension(cfg),
        TargetTrackingScalingPolicyConfiguration=policy_configuration(cfg),
    )


def plan_scale(plan: Plan, ctx: AwsContext, cfg: DogclfConfig) -> None:
    from dogclf.aws.endpoints import describe_endpoint  # endpoints imports this module

    endpoint = describe_endpoint(ctx, cfg.names.endpoint)
    if endpoint is None:
        raise NotFoundError(
            f"endpoint {cfg.names.endpoint} does not exist", "run `dogclf deploy` first"
        )
    variants = [v["VariantName"] for v in endpoint.get("ProductionVariants", [])]
    if variants and cfg.endpoint.variant_name not in variants:
        raise NotFoundError(
            f"endpoint {cfg.names.endpoint} has no variant {cfg.endpoint.variant_name!r} "
            f"(it has {', '.join(variants)})",
            "run `dogclf deploy` so the endpoint matches endpoint.variant_name",
        )
    rid, a = resource_id(cfg), cfg.autoscaling
    bounds = f"{a.min_instances}..{a.max_instances} instances"

    target = current_target(ctx, cfg)
    if target is None:
        plan.add(
            Action.CREATE,
            "scalable target",
            rid,
            bounds,
            lambda: register_target(ctx, cfg, with_tags=True),
        )
    elif (target["MinCapacity"], target["MaxCapacity"]) != (a.min_instances, a.max_instances):
        plan.add(
            Action.UPDATE,
            "scalable target",
            rid,
            f"{target['MinCapacity']}..{target['MaxCapacity']} -> {bounds}",
            lambda: register_target(ctx, cfg, with_tags=False),
        )
    else:
        plan.add(Action.NOOP, "scalable target", rid, bounds)

    wanted = policy_configuration(cfg)
    summary = (
        f"target {wanted['TargetValue']:g} invocations/instance/min, cooldowns "
        f"in {a.scale_in_cooldown} s / out {a.scale_out_cooldown} s"
    )
    policy = current_policy(ctx, cfg) if target is not None else None

    def put() -> Any:
        return put_policy(ctx, cfg)

    if policy is None:
        plan.add(Action.CREATE, "scaling policy", cfg.names.scaling_policy, summary, put)
    else:
        changes = _policy_differences(policy, wanted)
        if changes:
            plan.add(
                Action.UPDATE, "scaling policy", cfg.names.scaling_policy, "; ".join(changes), put
            )
        else:
            plan.add(Action.NOOP, "scaling policy", cfg.names.scaling_policy, summary)


def pause(ctx: AwsContext, cfg: DogclfConfig) -> None:
    """Delete the policy and deregister the target (before an instance-type change)."""
    for step in delete_steps(ctx, cfg):
        assert step.apply is not None
        step.apply()


def resume(ctx: AwsContext, cfg: DogclfConfig) -> None:
    """Register the target and put the policy again, with the configured numbers."""
    register_target(ctx, cfg, with_tags=True)
    put_policy(ctx, cfg)


def delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    """Policy, then target (AWS drops a target's policies with it; moto does not)."""
    policy = current_policy(ctx, cfg)
    return _unregister_steps(
        ctx,
        resource_id(cfg),
        [policy["PolicyName"]] if policy is not None else [],
        current_target(ctx, cfg),
        "target tracking on invocations",
    )


def _unregister_steps(
    ctx: AwsContext,
    rid: str,
    policies: list[str],
    target: dict[str, Any] | None,
    why: str,
) -> list[Step]:
    """Delete each policy on `rid`, then deregister its target (when registered)."""
    aas = ctx.client("application-autoscaling")
    dimension: dict[str, Any] = {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": rid,
        "ScalableDimension": DIMENSION,
    }
    steps = [
        delete_step(
            "scaling policy",
            name,
            why,
            f"delete the scaling policy {name}",
            aas.delete_scaling_policy,
            PolicyName=name,
            **dimension,
        )
        for name in policies
    ]
    if target is not None:
        bounds = f"{target['MinCapacity']}..{target['MaxCapacity']} instances"
        what, deregister = f"deregister the scalable target {rid}", aas.deregister_scalable_target
        steps.append(delete_step("scalable target", rid, bounds, what, deregister, **dimension))
    return steps


def removed_variant_steps(ctx: AwsContext, cfg: DogclfConfig, variants: list[str]) -> list[Step]:
    """Take auto-scaling off variants an update removes (AWS refuses the update otherwise)."""
    if not variants:
        return []
    aas = ctx.client("application-autoscaling")
    rids = [cfg.names.scalable_resource_id(v) for v in variants]
    with aws_errors("describe the scalable targets of the variants this deploy removes"):
        targets = aas.describe_scalable_targets(
            ServiceNamespace=NAMESPACE, ResourceIds=rids, ScalableDimension=DIMENSION
        )["ScalableTargets"]
    steps: list[Step] = []
    for target in targets:
        rid = target["ResourceId"]
        with aws_errors(f"describe the scaling policies of {rid}"):
            policies = aas.describe_scaling_policies(
                ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION
            )["ScalingPolicies"]
        why = "on a variant this deploy removes (AWS refuses the update while it is registered)"
        steps += _unregister_steps(ctx, rid, [p["PolicyName"] for p in policies], target, why)
    return steps
