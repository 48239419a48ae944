"""The real-time endpoint: SageMaker model, endpoint config, endpoint; blue/green updates.

Names carry a hash of what they hold: the model's of (model data, image, environment,
role), the endpoint config's of (model name, instance type and count, variant). An
unchanged deploy therefore finds everything in place and plans only no-ops; a changed one
creates a new config and switches the endpoint with UpdateEndpoint (SageMaker brings the
new fleet up, shifts traffic, then retires the old one: blue/green). Configs and models
the endpoint no longer uses are deleted once it is InService on the new one.

`endpoint.mode = "serverless"` deploys a ServerlessConfig variant instead of instances
(aws/serverless.py has AWS's rules). AWS refuses to update an instance-based endpoint into a
serverless one, so that switch replaces the endpoint: delete it, create it again under the
same name (nothing answers in between); the other way is an ordinary blue/green update.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from dogclf.aws import autoscaling, serverless
from dogclf.aws.instance_gpus import gpu_count
from dogclf.aws.polling import Report, ignore, wait_until
from dogclf.aws.pricing import vcpu_count
from dogclf.aws.session import (
    AwsContext,
    aws_errors,
    call,
    delete_step,
    deleter,
    get_or_none,
    tag_list,
)
from dogclf.errors import AwsError, ResourceFailedError
from dogclf.plan import Action, Plan, Step
from dogclf.units import MiB

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

# UpdateRollbackFailed is settled: SageMaker leaves it there until someone acts.
SETTLED = {"InService", "Failed", "OutOfService", "UpdateRollbackFailed"}
BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
ROLLBACK_FAILED = "UpdateRollbackFailed"
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
    # The variant's ServerlessConfig (endpoint.mode = "serverless"); None: instances.
    serverless_config: dict[str, int] | None = None

    @classmethod
    def build(
        cls, cfg: DogclfConfig, *, model_data: str, image: str, role: str, region: str
    ) -> DeploySpec:
        env = model_environment(cfg, region, image)
        model_name = cfg.names.model(_digest([model_data, image, env, role]))
        e = cfg.endpoint
        shape: list[Any] = [e.instance_type, e.initial_instance_count]
        sls = serverless.serverless_config(cfg) if serverless.is_serverless(cfg) else None
        if sls is not None:
            shape = ["serverless", sls]
        config_name = cfg.names.endpoint_config(_digest([model_name, *shape, e.variant_name]))
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
            sls,
        )

    def summary(self) -> dict[str, Any]:
        """What `deploy` reports (--json) about the endpoint it plans."""
        sls = self.serverless_config
        return {
            "endpoint": self.endpoint,
            "endpoint_config": self.config_name,
            "model": self.model_name,
            "model_data": self.model_data,
            "image": self.image,
            "mode": "realtime" if sls is None else "serverless",
            "shape": self.shape,
            "instance_type": self.instance_type if sls is None else None,
            "instance_count": self.instance_count if sls is None else None,
            "serverless_config": sls,
        }

    @property
    def shape(self) -> str:
        """`1 x ml.m5.large` or `serverless 2048 MB, max concurrency 5`."""
        if self.serverless_config is not None:
            return serverless.describe_serverless(self.serverless_config)
        return f"{self.instance_count} x {self.instance_type}"


def model_environment(cfg: DogclfConfig, region: str, image: str | None = None) -> dict[str, str]:
    """What the container (and code/inference.py) read at start-up: dogclf's serving
    limits, the model server's size on the PyTorch inference image, then
    endpoint.environment over both (an explicit value wins)."""
    env = _serving_environment(cfg, region)
    if is_pytorch_inference_image(cfg, image) and serverless.is_serverless(cfg):
        # No instance type to size for; threads: torch's default over the vCPUs it gets.
        env[WORKERS_VAR] = str(serverless.SERVERLESS_WORKERS)
    elif is_pytorch_inference_image(cfg, image):
        env.update(server_sizing(cfg.endpoint.instance_type).environment())
    user = cfg.endpoint.environment
    if WORKERS_VAR in env and any(k.startswith(TS_PREFIX) for k in user):
        # Any SAGEMAKER_TS_* makes torchserve.py write a "models" entry whose min/max
        # workers (SAGEMAKER_TS_MIN_WORKERS / _MAX_WORKERS, default 1) replace
        # default_workers_per_model: carry the chosen count over unless the user set it.
        for var in (f"{TS_PREFIX}MIN_WORKERS", f"{TS_PREFIX}MAX_WORKERS"):
            env[var] = env[WORKERS_VAR]
    env.update(user)
    return env


def _serving_environment(cfg: DogclfConfig, region: str) -> dict[str, str]:
    s = cfg.serving
    env = {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": region,
        "DOGCLF_SERVING__TOP_K": str(s.top_k),
        # Serverless requests stop at 4 MB: the container refuses larger ones as AWS would.
        "DOGCLF_SERVING__MAX_PAYLOAD_MB": str(
            min(s.max_payload_mb, serverless.SERVERLESS_MAX_PAYLOAD_BYTES / MiB)
            if serverless.is_serverless(cfg)
            else s.max_payload_mb
        ),
        "DOGCLF_SERVING__MAX_IMAGE_PIXELS": str(s.max_image_pixels),
    }
    if s.url_allow_hosts:
        env["DOGCLF_SERVING__URL_ALLOW_HOSTS"] = json.dumps(s.url_allow_hosts)
    return env


# ---------------------------------------------------------------- the model server's size

# What the PyTorch inference image reads (sagemaker-pytorch-inference 2.0.25,
# sagemaker-inference 1.10.1, TorchServe 0.12):
# - sagemaker_pytorch_serving_container/torchserve.py _generate_ts_config_properties writes
#   default_workers_per_model from sagemaker_inference/environment.py Environment
#   .model_server_workers (SAGEMAKER_MODEL_SERVER_WORKERS). Unset, TorchServe's
#   ConfigManager.getDefaultWorkers starts one worker per GPU, else one per vCPU
#   (availableProcessors; the image's vmargs -XX:-UseContainerSupport: the host's).
# - Any SAGEMAKER_TS_* variable (ts_environment.py is_env_set) adds a "models" entry whose
#   minWorkers/maxWorkers (default 1) override that: deploy sets none of them.
# - Each worker is a Python process that inherits the container's environment
#   (EnvironmentUtils.getEnvString), so OMP_NUM_THREADS sizes torch's intra-op pool there;
#   unset, every worker's torch takes all vCPUs: N workers x N threads on N vCPUs.
# - Left at their defaults: netty threads (TS_NUMBER_OF_NETTY_THREADS: vCPUs, I/O only),
#   job_queue_size (TS_JOB_QUEUE_SIZE: 100 per model), default_response_timeout
#   (SAGEMAKER_MODEL_SERVER_TIMEOUT: 60 s, SageMaker's own limit per request).
# Measured on 2 vCPUs, resnet50, 16 clients (issue 13; bench/torchserve_throughput.py runs
# the same legs): defaults (2 workers x 2 threads) 3.5 img/s, 1 x 2 14.0, 2 x 1 17.1. Hence on a CPU one worker per
# vCPU on one thread each; on GPUs one worker per GPU, the vCPUs shared out for decoding.
WORKERS_VAR = "SAGEMAKER_MODEL_SERVER_WORKERS"
THREADS_VAR = "OMP_NUM_THREADS"
TS_PREFIX = "SAGEMAKER_TS_"
PYTORCH_INFERENCE_REPOSITORY = "pytorch-inference"


@dataclass(frozen=True)
class ServerSizing:
    """Workers and torch threads for one instance type (None: TorchServe's defaults)."""

    instance_type: str
    vcpus: int | None
    gpus: int | None
    workers: int | None = None
    threads: int | None = None

    def environment(self) -> dict[str, str]:
        if self.workers is None or self.threads is None:
            return {}
        return {WORKERS_VAR: str(self.workers), THREADS_VAR: str(self.threads)}


def server_sizing(instance_type: str) -> ServerSizing:
    vcpus, gpus = vcpu_count(instance_type), gpu_count(instance_type)
    if vcpus is None or gpus is None:
        return ServerSizing(instance_type, vcpus, gpus)
    if gpus:
        return ServerSizing(instance_type, vcpus, gpus, gpus, max(1, vcpus // gpus))
    return ServerSizing(instance_type, vcpus, gpus, vcpus, 1)


def is_pytorch_inference_image(cfg: DogclfConfig, image: str | None) -> bool:
    """AWS's PyTorch inference image (the default, or named in endpoint.image_uri); not
    the BYO `dogclf serve` image, which sizes itself (DOGCLF_SERVING__*)."""
    image = image or cfg.endpoint.image_uri
    if image is None:
        return True
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return repository == PYTORCH_INFERENCE_REPOSITORY


def server_line(spec: DeploySpec) -> str:
    """The deploy plan's line on the PyTorch image's model server: what it will run."""
    if spec.serverless_config is not None:
        workers = spec.environment.get(WORKERS_VAR, "TorchServe's default")
        return f"model server: {workers} worker (AWS's advice for serverless), torch on its vCPUs"
    sizing, env = server_sizing(spec.instance_type), spec.environment
    if sizing.vcpus is None or sizing.gpus is None:
        shape = f"{spec.instance_type} not in the vCPU table"
    else:
        gpus = f", {sizing.gpus} GPUs" if sizing.gpus else ""
        shape = f"{spec.instance_type}: {sizing.vcpus} vCPUs{gpus}"
    workers = env.get(WORKERS_VAR, "TorchServe's default (one per GPU, else per vCPU)")
    threads = env.get(THREADS_VAR, "all vCPUs")
    threads += " thread" if threads == "1" else " threads"
    return f"model server: {workers} workers, torch on {threads} each ({shape})"


def describe_endpoint(ctx: AwsContext, name: str) -> dict[str, Any] | None:
    return get_or_none(
        f"describe endpoint {name}", ctx.client("sagemaker").describe_endpoint, EndpointName=name
    )


def variant_types(ctx: AwsContext, config_name: str) -> dict[str, str]:
    """Variant name -> instance type in an endpoint config ({} when it is gone)."""
    config = get_or_none(
        f"describe endpoint config {config_name}",
        ctx.client("sagemaker").describe_endpoint_config,
        EndpointConfigName=config_name,
    )
    return {
        v["VariantName"]: str(v.get("InstanceType", "?"))
        for v in (config or {}).get("ProductionVariants", [])
    }


@dataclass(frozen=True)
class RecordKind:
    """A SageMaker record a deploy creates under a hashed name: endpoint configs, models."""

    resource: str  # as plans and `status` name it
    listed: str  # the key of the list call's answer
    key: str  # the name field, in list answers and the delete call
    list_op: str
    delete_op: str
    prefix: Callable[[DogclfConfig], str]  # this project/stage's names start with it


CONFIGS = RecordKind(
    "endpoint config",
    "EndpointConfigs",
    "EndpointConfigName",
    "list_endpoint_configs",
    "delete_endpoint_config",
    lambda cfg: cfg.names.endpoint_config(""),
)
MODELS = RecordKind(
    "sagemaker model",
    "Models",
    "ModelName",
    "list_models",
    "delete_model",
    lambda cfg: cfg.names.model(""),
)


def record_names(ctx: AwsContext, cfg: DogclfConfig, kind: RecordKind) -> list[str]:
    """Names of this project/stage's configs or models (prefix + a 12-digit hash)."""
    pattern = re.compile(re.escape(kind.prefix(cfg)) + r"[0-9a-f]{12}$")
    pages = ctx.client("sagemaker").get_paginator(kind.list_op)
    names = []
    with aws_errors(f"list SageMaker {kind.listed}"):
        for page in pages.paginate(NameContains=cfg.names.base):
            names += [item[kind.key] for item in page[kind.listed] if pattern.match(item[kind.key])]
    return sorted(names)


def record_delete_steps(
    ctx: AwsContext, cfg: DogclfConfig, kind: RecordKind, message: str, *, keep: str = ""
) -> list[Step]:
    """A delete step for each of the kind's records but `keep` (the one now in use)."""
    delete = getattr(ctx.client("sagemaker"), kind.delete_op)
    steps = []
    for name in record_names(ctx, cfg, kind):
        if name != keep:
            by_name: dict[str, Any] = {kind.key: name}
            what = f"delete {kind.resource} {name}"
            steps.append(delete_step(kind.resource, name, message, what, delete, **by_name))
    return steps


# ---------------------------------------------------------------- waiting


def wait_endpoint(
    ctx: AwsContext,
    name: str,
    *,
    expect_config: str | None = None,
    poll_interval: float = 30.0,
    timeout: float | None = ENDPOINT_TIMEOUT_S,
    on_status: Report = ignore,
) -> dict[str, Any]:
    """Until InService (on `expect_config`, if given); Failed -> exit 1 with the reason.

    `on_status` hears each status change: "endpoint NAME: Creating (12 s)"."""
    started = time.monotonic()
    last = [""]

    def on_poll(d: dict[str, Any]) -> None:
        status = d["EndpointStatus"]
        if status != last[0]:
            last[0] = status
            on_status(f"endpoint {name}: {status} ({time.monotonic() - started:.0f} s)")

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
    if status == ROLLBACK_FAILED:
        raise ResourceFailedError(
            f"endpoint {name} is UpdateRollbackFailed: the update and its rollback both "
            f"failed: {reason or 'no reason given'}",
            "it still serves, on a mix of the old and new configs: fix the cause, then "
            "`dogclf deploy` again (UpdateEndpoint puts it back InService on one config), "
            "or delete it with `dogclf teardown`",
        )
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


def delete_endpoint(
    ctx: AwsContext, name: str, *, deleting: bool = False, poll_interval: float = 15.0
) -> None:
    """Delete the endpoint (unless it is already `deleting`) and wait until it is gone."""
    if not deleting:
        sm = ctx.client("sagemaker")
        deleter(f"delete endpoint {name}", sm.delete_endpoint, EndpointName=name)()
    wait_deleted(ctx, name, poll_interval=poll_interval)


def endpoint_delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    """Teardown's step for the endpoint; configs and models go after it."""
    name = cfg.names.endpoint
    endpoint = describe_endpoint(ctx, name)
    if endpoint is None:
        return []
    status = endpoint["EndpointStatus"]
    return [
        Step(
            Action.DELETE,
            "endpoint",
            name,
            f"{status}; waits until gone",
            partial(delete_endpoint, ctx, name, deleting=status == "Deleting"),
        )
    ]


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class DeployWatch:
    """How an applying deploy waits and what it tells the user (the command passes
    render.note / render.warn; the defaults say nothing)."""

    poll_interval: float = 30.0
    on_status: Report = ignore  # the endpoint's status changes while waiting
    on_warning: Report = ignore  # something the user must fix by hand later


def plan_deploy(
    plan: Plan, ctx: AwsContext, cfg: DogclfConfig, spec: DeploySpec, watch: DeployWatch
) -> None:
    """Model, endpoint config, endpoint (create, recreate or blue/green), then cleanup."""
    _plan_model(plan, ctx, cfg, spec)
    _plan_config(plan, ctx, cfg, spec)
    _plan_endpoint(plan, _Switch(ctx, cfg, spec, watch))
    message = "no longer used"
    plan.steps += record_delete_steps(ctx, cfg, CONFIGS, message, keep=spec.config_name)
    plan.steps += record_delete_steps(ctx, cfg, MODELS, message, keep=spec.model_name)


def _plan_model(plan: Plan, ctx: AwsContext, cfg: DogclfConfig, spec: DeploySpec) -> None:
    sm = ctx.client("sagemaker")
    found = get_or_none(
        f"describe model {spec.model_name}", sm.describe_model, ModelName=spec.model_name
    )
    server = f"; {server_line(spec)}" if is_pytorch_inference_image(cfg, spec.image) else ""
    if found:
        plan.add(Action.NOOP, "sagemaker model", spec.model_name, "exists" + server)
        return
    plan.add(
        Action.CREATE,
        "sagemaker model",
        spec.model_name,
        f"{spec.model_data} in {spec.image.rsplit('/', 1)[-1]}{server}",
        partial(
            call,
            f"create model {spec.model_name}",
            sm.create_model,
            ModelName=spec.model_name,
            ExecutionRoleArn=spec.role,
            PrimaryContainer={
                "Image": spec.image,
                "ModelDataUrl": spec.model_data,
                "Environment": spec.environment,
            },
            Tags=tag_list(cfg),
        ),
    )


def _plan_config(plan: Plan, ctx: AwsContext, cfg: DogclfConfig, spec: DeploySpec) -> None:
    sm = ctx.client("sagemaker")
    found = get_or_none(
        f"describe endpoint config {spec.config_name}",
        sm.describe_endpoint_config,
        EndpointConfigName=spec.config_name,
    )
    shape = f"{spec.shape}, variant {spec.variant}"
    if found:
        plan.add(Action.NOOP, "endpoint config", spec.config_name, shape)
        return
    variant: dict[str, Any] = {
        "VariantName": spec.variant,
        "ModelName": spec.model_name,
        "InitialVariantWeight": 1.0,
    }
    if spec.serverless_config is not None:
        variant["ServerlessConfig"] = spec.serverless_config
    else:
        variant |= {"InstanceType": spec.instance_type, "InitialInstanceCount": spec.instance_count}
    plan.add(
        Action.CREATE,
        "endpoint config",
        spec.config_name,
        shape,
        partial(
            call,
            f"create endpoint config {spec.config_name}",
            sm.create_endpoint_config,
            EndpointConfigName=spec.config_name,
            ProductionVariants=[variant],
            Tags=tag_list(cfg),
        ),
    )


@dataclass(frozen=True)
class _Switch:
    """The endpoint step's actions: put the endpoint on spec's config, wait for InService."""

    ctx: AwsContext
    cfg: DogclfConfig
    spec: DeploySpec
    watch: DeployWatch

    def _switch(self, verb: str, fn: Callable[..., Any], **extra: Any) -> None:
        spec, watch = self.spec, self.watch
        call(
            f"{verb} endpoint {spec.endpoint}",
            fn,
            EndpointName=spec.endpoint,
            EndpointConfigName=spec.config_name,
            **extra,
        )
        wait_endpoint(
            self.ctx,
            spec.endpoint,
            expect_config=spec.config_name,
            poll_interval=watch.poll_interval,
            on_status=watch.on_status,
        )

    def create(self) -> None:
        self._switch(
            "create", self.ctx.client("sagemaker").create_endpoint, Tags=tag_list(self.cfg)
        )

    def recreate(self) -> None:
        """A Failed / OutOfService endpoint cannot be updated: delete it, create it again."""
        delete_endpoint(self.ctx, self.spec.endpoint, poll_interval=self.watch.poll_interval)
        self.create()

    def update(self, *, pause: bool, retain: bool, rescale: bool = False) -> None:
        """Blue/green; `pause` takes auto-scaling off around it (an instance-type change);
        `rescale` registers it on the new variant after a rename (the plan's steps took it
        off the old one first)."""
        ctx, cfg = self.ctx, self.cfg
        if pause:
            autoscaling.pause(ctx, cfg)
        try:
            sm = ctx.client("sagemaker")
            self._switch("update", sm.update_endpoint, RetainAllVariantProperties=retain)
        except Exception:
            if pause:  # the old fleet still serves: give it its scaling back
                self._resume_quietly()
            elif rescale:
                self.watch.on_warning(
                    "the old variant still serves without auto-scaling (deregistered for the "
                    f"rename to {self.spec.variant}); `dogclf deploy` again once fixed"
                )
            raise
        if pause or rescale:
            autoscaling.resume(ctx, cfg)

    def _resume_quietly(self) -> None:
        try:
            autoscaling.resume(self.ctx, self.cfg)
        except AwsError as exc:
            self.watch.on_warning(
                f"auto-scaling is off: {exc.message}; run `dogclf scale` once it is InService"
            )


def _plan_endpoint(plan: Plan, switch: _Switch) -> None:
    spec = switch.spec
    current = describe_endpoint(switch.ctx, spec.endpoint)
    if current is None:
        message = f"on {spec.config_name}; waits for InService"
        plan.add(Action.CREATE, "endpoint", spec.endpoint, message, switch.create)
        return
    status, on = current["EndpointStatus"], current["EndpointConfigName"]
    if status in BUSY:
        raise AwsError(
            f"endpoint {spec.endpoint} is {status}; it cannot change until that finishes",
            "wait, then run `dogclf deploy` again (`dogclf status` shows its state)",
        )
    if status in ("Failed", "OutOfService"):
        message = f"is {status}: delete it, create it on {spec.config_name}"
        plan.add(Action.UPDATE, "endpoint", spec.endpoint, message, switch.recreate)
    elif on == spec.config_name and status != ROLLBACK_FAILED:
        plan.add(Action.NOOP, "endpoint", spec.endpoint, f"InService on {on}")
    elif spec.serverless_config is not None and not serverless.endpoint_is_serverless(current):
        _plan_replace(plan, switch)
    else:  # UpdateRollbackFailed takes UpdateEndpoint again, which settles it on one config
        _plan_blue_green(plan, switch, current)


def _plan_replace(plan: Plan, switch: _Switch) -> None:
    """Real-time -> serverless: AWS refuses UpdateEndpoint between the two, so the endpoint
    is deleted and created again under its name (the Lambda, its IAM policy and clients keep
    it). Its instance auto-scaling goes first: it has nothing to scale on a serverless one."""
    spec = switch.spec
    plan.steps += autoscaling.delete_steps(switch.ctx, switch.cfg)
    message = (
        f"replace (real-time -> serverless, which AWS cannot update in place): delete it, "
        f"create it on {spec.config_name}; nothing answers until it is InService again "
        "(minutes on AWS: requests and the Lambda fail meanwhile)"
    )
    plan.add(Action.UPDATE, "endpoint", spec.endpoint, message, switch.recreate)


def _plan_blue_green(plan: Plan, switch: _Switch, current: dict[str, Any]) -> None:
    ctx, cfg, spec = switch.ctx, switch.cfg, switch.spec
    on = current["EndpointConfigName"]
    # AWS refuses an update that removes a variant registered for auto-scaling (a rename
    # of endpoint.variant_name): its policies and target go first, as steps of their own.
    removed = [v["VariantName"] for v in current.get("ProductionVariants", [])]
    moved = autoscaling.removed_variant_steps(ctx, cfg, [v for v in removed if v != spec.variant])
    plan.steps += moved
    scaled = autoscaling.current_target(ctx, cfg) is not None
    old_type = variant_types(ctx, on).get(spec.variant)
    # AWS refuses to change the instance type of a variant registered for auto-scaling;
    # a model-only change keeps the count auto-scaling chose (RetainAllVariantProperties).
    pause = scaled and old_type != spec.instance_type
    retain = scaled and not pause
    message = f"blue/green: {on} -> {spec.config_name}"
    if spec.serverless_config is None and serverless.endpoint_is_serverless(current):
        message += " (serverless -> real-time: AWS converts it in place, no gap)"
    if current["EndpointStatus"] == ROLLBACK_FAILED:
        message = f"is {ROLLBACK_FAILED}: " + message
    a = cfg.autoscaling
    if pause:
        message += (
            f"; auto-scaling off during the switch ({old_type} -> {spec.instance_type}), "
            f"then on again at {a.min_instances}..{a.max_instances}"
        )
    elif retain:
        message += "; keeps the instance count auto-scaling set"
    if moved:
        message += (
            f"; then auto-scaling on variant {spec.variant} at {a.min_instances}..{a.max_instances}"
        )
    update = partial(switch.update, pause=pause, retain=retain, rescale=bool(moved))
    plan.add(Action.UPDATE, "endpoint", spec.endpoint, message, update)
