"""The real-time endpoint: SageMaker model, endpoint config, endpoint; blue/green updates.

Names carry a hash of what they hold: the model's of (model data, image, environment,
role), the endpoint config's of (model name, instance type and count, variant). An
unchanged deploy therefore finds everything in place and plans only no-ops; a changed one
creates a new config and switches the endpoint with UpdateEndpoint (SageMaker brings the
new fleet up, shifts traffic, then retires the old one: blue/green). Configs and models
the endpoint no longer uses are deleted once it is InService on the new one.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dogclf import render
from dogclf.aws import autoscaling
from dogclf.aws.polling import wait_until
from dogclf.aws.session import AwsContext, aws_errors, call, get_or_none, tag_list
from dogclf.errors import AwsError, ResourceFailedError
from dogclf.plan import Action, Plan

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

SETTLED = {"InService", "Failed", "OutOfService"}
BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "UpdateRollbackFailed"}
ENDPOINT_TIMEOUT_S = 3600.0


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DeploySpec:
    """Everything the endpoint should be, derived from the config and the model URI."""

    model_data: str
    image: str
    role: str
    environment: dict[str, str]
    instance_type: str
    instance_count: int
    variant: str
    model_name: str
    config_name: str
    endpoint: str

    @classmethod
    def build(
        cls, cfg: DogclfConfig, *, model_data: str, image: str, role: str, region: str
    ) -> DeploySpec:
        env = model_environment(cfg, region)
        model_name = cfg.names.model(_digest([model_data, image, env, role]))
        e = cfg.endpoint
        config_name = cfg.names.endpoint_config(
            _digest([model_name, e.instance_type, e.initial_instance_count, e.variant_name])
        )
        return cls(
            model_data,
            image,
            role,
            env,
            e.instance_type,
            e.initial_instance_count,
            e.variant_name,
            model_name,
            config_name,
            cfg.names.endpoint,
        )


def model_environment(cfg: DogclfConfig, region: str) -> dict[str, str]:
    """What the PyTorch inference container (and code/inference.py) read at start-up."""
    s = cfg.serving
    env = {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": region,
        "DOGCLF_SERVING__TOP_K": str(s.top_k),
        "DOGCLF_SERVING__MAX_PAYLOAD_MB": str(s.max_payload_mb),
        "DOGCLF_SERVING__MAX_IMAGE_PIXELS": str(s.max_image_pixels),
    }
    if s.url_allow_hosts:
        env["DOGCLF_SERVING__URL_ALLOW_HOSTS"] = json.dumps(s.url_allow_hosts)
    return env


def describe_endpoint(ctx: AwsContext, name: str) -> dict[str, Any] | None:
    return get_or_none(
        f"describe endpoint {name}", ctx.client("sagemaker").describe_endpoint, EndpointName=name
    )


def list_names(
    ctx: AwsContext, kind: str, pattern: re.Pattern[str], name_contains: str
) -> list[str]:
    """Names of our models ("Models") or endpoint configs ("EndpointConfigs")."""
    sm = ctx.client("sagemaker")
    op = {"Models": "list_models", "EndpointConfigs": "list_endpoint_configs"}[kind]
    key = {"Models": "ModelName", "EndpointConfigs": "EndpointConfigName"}[kind]
    names = []
    with aws_errors(f"list SageMaker {kind}"):
        for page in sm.get_paginator(op).paginate(NameContains=name_contains):
            names += [item[key] for item in page[kind] if pattern.match(item[key])]
    return sorted(names)


def model_pattern(cfg: DogclfConfig) -> re.Pattern[str]:
    return re.compile(re.escape(cfg.names.model("")) + r"[0-9a-f]{12}$")


def config_pattern(cfg: DogclfConfig) -> re.Pattern[str]:
    return re.compile(re.escape(cfg.names.endpoint_config("")) + r"[0-9a-f]{12}$")


# ---------------------------------------------------------------- waiting


def wait_endpoint(
    ctx: AwsContext,
    name: str,
    *,
    expect_config: str | None = None,
    poll_interval: float = 30.0,
    timeout: float | None = ENDPOINT_TIMEOUT_S,
) -> dict[str, Any]:
    """Until InService (on `expect_config`, if given); Failed -> exit 1 with the reason."""
    started = time.monotonic()
    last = [""]

    def on_poll(d: dict[str, Any]) -> None:
        status = d["EndpointStatus"]
        if status != last[0]:
            last[0] = status
            render.note(f"endpoint {name}: {status} ({time.monotonic() - started:.0f} s)")

    described = wait_until(
        lambda: call(
            f"describe endpoint {name}",
            ctx.client("sagemaker").describe_endpoint,
            EndpointName=name,
        ),
        lambda d: str(d["EndpointStatus"]),
        SETTLED,
        what=f"endpoint {name}",
        poll_interval=poll_interval,
        timeout=timeout,
        on_poll=on_poll,
    )
    status, reason = described["EndpointStatus"], described.get("FailureReason")
    if status != "InService":
        raise ResourceFailedError(
            f"endpoint {name} is {status}: {reason or 'no reason given'}",
            "check the model's CloudWatch logs (/aws/sagemaker/Endpoints/" + name + "); "
            "fix, then `dogclf deploy` again",
        )
    if expect_config and described["EndpointConfigName"] != expect_config:
        # A failed UpdateEndpoint rolls back: InService on the old config, with a reason.
        raise ResourceFailedError(
            f"endpoint {name}: the update to {expect_config} failed and was rolled back to "
            f"{described['EndpointConfigName']}: {reason or 'no reason given'}",
            "the old model still serves; check /aws/sagemaker/Endpoints/" + name + " logs",
        )
    return dict(described)


def wait_deleted(ctx: AwsContext, name: str, *, poll_interval: float = 15.0) -> None:
    wait_until(
        lambda: describe_endpoint(ctx, name) or {"EndpointStatus": "Gone"},
        lambda d: str(d["EndpointStatus"]),
        {"Gone"},
        what=f"deletion of endpoint {name}",
        poll_interval=poll_interval,
        timeout=ENDPOINT_TIMEOUT_S,
    )


# ---------------------------------------------------------------- the plan


def plan_deploy(
    plan: Plan, ctx: AwsContext, cfg: DogclfConfig, spec: DeploySpec, *, poll_interval: float
) -> None:
    sm = ctx.client("sagemaker")
    tags = tag_list(cfg)

    found_model = get_or_none(
        f"describe model {spec.model_name}", sm.describe_model, ModelName=spec.model_name
    )
    if found_model:
        plan.add(Action.NOOP, "sagemaker model", spec.model_name, "exists")
    else:
        plan.add(
            Action.CREATE,
            "sagemaker model",
            spec.model_name,
            f"{spec.model_data} in {spec.image.rsplit('/', 1)[-1]}",
            lambda: call(
                f"create model {spec.model_name}",
                sm.create_model,
                ModelName=spec.model_name,
                ExecutionRoleArn=spec.role,
                PrimaryContainer={
                    "Image": spec.image,
                    "ModelDataUrl": spec.model_data,
                    "Environment": spec.environment,
                },
                Tags=tags,
            ),
        )

    found_config = get_or_none(
        f"describe endpoint config {spec.config_name}",
        sm.describe_endpoint_config,
        EndpointConfigName=spec.config_name,
    )
    shape = f"{spec.instance_count} x {spec.instance_type}, variant {spec.variant}"
    if found_config:
        plan.add(Action.NOOP, "endpoint config", spec.config_name, shape)
    else:
        plan.add(
            Action.CREATE,
            "endpoint config",
            spec.config_name,
            shape,
            lambda: call(
                f"create endpoint config {spec.config_name}",
                sm.create_endpoint_config,
                EndpointConfigName=spec.config_name,
                ProductionVariants=[
                    {
                        "VariantName": spec.variant,
                        "ModelName": spec.model_name,
                        "InstanceType": spec.instance_type,
                        "InitialInstanceCount": spec.instance_count,
                        "InitialVariantWeight": 1.0,
                    }
                ],
                Tags=tags,
            ),
        )

    _plan_endpoint(plan, ctx, cfg, spec, tags, poll_interval)
    _plan_cleanup(plan, ctx, cfg, spec)


def _plan_endpoint(
    plan: Plan,
    ctx: AwsContext,
    cfg: DogclfConfig,
    spec: DeploySpec,
    tags: list[dict[str, str]],
    poll: float,
) -> None:
    sm = ctx.client("sagemaker")
    current = describe_endpoint(ctx, spec.endpoint)

    def switch(verb: str, fn: Callable[..., Any], **extra: Any) -> None:
        """Create or update the endpoint on the new config, then wait for InService."""
        call(
            f"{verb} endpoint {spec.endpoint}",
            fn,
            EndpointName=spec.endpoint,
            EndpointConfigName=spec.config_name,
            **extra,
        )
        wait_endpoint(ctx, spec.endpoint, expect_config=spec.config_name, poll_interval=poll)

    def create() -> None:
        switch("create", sm.create_endpoint, Tags=tags)

    if current is None:
        plan.add(
            Action.CREATE,
            "endpoint",
            spec.endpoint,
            f"on {spec.config_name}; waits for InService",
            create,
        )
        return
    status, on = current["EndpointStatus"], current["EndpointConfigName"]
    if status in BUSY:
        raise AwsError(
            f"endpoint {spec.endpoint} is {status}; it cannot change until that finishes",
            "wait, then run `dogclf deploy` again (`dogclf status` shows its state)",
        )
    if status in ("Failed", "OutOfService"):

        def recreate() -> None:
            call(f"delete endpoint {spec.endpoint}", sm.delete_endpoint, EndpointName=spec.endpoint)
            wait_deleted(ctx, spec.endpoint, poll_interval=poll)
            create()

        plan.add(
            Action.UPDATE,
            "endpoint",
            spec.endpoint,
            f"is {status}: delete it, create it on {spec.config_name}",
            recreate,
        )
        return
    if on == spec.config_name:
        plan.add(Action.NOOP, "endpoint", spec.endpoint, f"InService on {on}")
        return

    scaled = autoscaling.current_target(ctx, cfg) is not None
    old_type = _variant_type(ctx, on, spec.variant)
    # AWS refuses to change the instance type of a variant registered for auto-scaling;
    # a model-only change keeps the count auto-scaling chose (RetainAllVariantProperties).
    pause = scaled and old_type != spec.instance_type
    retain = scaled and not pause

    def update() -> None:
        if pause:
            autoscaling.pause(ctx, cfg)
        try:
            switch("update", sm.update_endpoint, RetainAllVariantProperties=retain)
        except Exception:
            if pause:  # the old fleet still serves: give it its scaling back
                _resume_quietly(ctx, cfg)
            raise
        if pause:
            autoscaling.resume(ctx, cfg)

    message = f"blue/green: {on} -> {spec.config_name}"
    if pause:
        a = cfg.autoscaling
        message += (
            f"; auto-scaling off during the switch ({old_type} -> {spec.instance_type}), "
            f"then on again at {a.min_instances}..{a.max_instances}"
        )
    elif retain:
        message += "; keeps the instance count auto-scaling set"
    plan.add(Action.UPDATE, "endpoint", spec.endpoint, message, update)


def _variant_type(ctx: AwsContext, config_name: str, variant: str) -> str | None:
    config = get_or_none(
        f"describe endpoint config {config_name}",
        ctx.client("sagemaker").describe_endpoint_config,
        EndpointConfigName=config_name,
    )
    for v in (config or {}).get("ProductionVariants", []):
        if v["VariantName"] == variant:
            return str(v.get("InstanceType"))
    return None


def _resume_quietly(ctx: AwsContext, cfg: DogclfConfig) -> None:
    try:
        autoscaling.resume(ctx, cfg)
    except AwsError as exc:
        render.warn(f"auto-scaling is off: {exc.message}; run `dogclf scale` once it is InService")


def _plan_cleanup(plan: Plan, ctx: AwsContext, cfg: DogclfConfig, spec: DeploySpec) -> None:
    """Old configs and models of this project/stage, deleted after the switch succeeded."""
    sm = ctx.client("sagemaker")
    base = cfg.names.base
    for name in list_names(ctx, "EndpointConfigs", config_pattern(cfg), base):
        if name != spec.config_name:
            plan.add(
                Action.DELETE,
                "endpoint config",
                name,
                "no longer used",
                deleter(sm.delete_endpoint_config, EndpointConfigName=name),
            )
    for name in list_names(ctx, "Models", model_pattern(cfg), base):
        if name != spec.model_name:
            plan.add(
                Action.DELETE,
                "sagemaker model",
                name,
                "no longer used",
                deleter(sm.delete_model, ModelName=name),
            )


def deleter(fn: Callable[..., Any], **kwargs: Any) -> Callable[[], None]:
    """A delete that treats "already gone" as done (teardown and cleanup run twice safely)."""
    what = "delete " + " ".join(str(v) for v in kwargs.values())

    def run() -> None:
        get_or_none(what, fn, **kwargs)

    return run
