"""What this project/stage owns on AWS: one table of resource kinds for `status` and `teardown`.

Protocol. A kind is `ResourceKind(name, describe, delete_steps=None, opt_in=None)`:
- `describe(ctx, cfg)` returns what exists as `ResourceStatus` rows, [] when nothing does.
  It turns what the service module reads into rows; that is all this module adds.
- `delete_steps(ctx, cfg)`, owned by the service module (endpoints, lambda_fn, iam,
  autoscaling, s3, jobs_in_flight), returns `dogclf.plan.Step`s (action DELETE) in the order
  they must run, [] when nothing exists. Each step's apply succeeds when the thing is already
  gone (`session.deleter`), so teardown can run twice. None: teardown leaves the kind alone.
- `opt_in` names the teardown flag that includes the kind (e.g. "data" for `--data`);
  None: always torn down. `status` shows every kind.
`KINDS` is in teardown order: what depends on something comes before it. To add a kind,
add one entry at its place in the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dogclf.aws import (
    autoscaling,
    endpoints,
    feature_cache_store,
    iam,
    jobs_in_flight,
    lambda_fn,
    logs,
    s3,
    serverless,
)
from dogclf.aws.artifacts import read_latest
from dogclf.aws.pricing import instances_cost, provisioned_concurrency_cost, serverless_price
from dogclf.aws.session import AwsContext
from dogclf.plan import Step

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig


@dataclass
class ResourceStatus:
    kind: str
    name: str
    state: str
    details: str = ""
    hourly_cost: float | None = None  # USD per hour while it exists; None: unknown or free
    running: bool = False  # billed by the hour (so a missing price reads "unknown")
    pricing: dict[str, Any] | None = None  # per-request prices (a serverless endpoint)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Describe = Callable[["AwsContext", "DogclfConfig"], list[ResourceStatus]]
DeleteSteps = Callable[["AwsContext", "DogclfConfig"], list[Step]]


@dataclass(frozen=True)
class ResourceKind:
    name: str
    describe: Describe
    delete_steps: DeleteSteps | None = None
    opt_in: str | None = None


# ---------------------------------------------------------------- auto-scaling


def describe_autoscaling(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    found = []
    target = autoscaling.current_target(ctx, cfg)
    if target is not None:
        found.append(
            ResourceStatus(
                "scalable target",
                target["ResourceId"],
                "registered",
                f"{target['MinCapacity']}..{target['MaxCapacity']} instances",
            )
        )
        policy = autoscaling.current_policy(ctx, cfg)
        if policy is not None:
            conf = policy.get("TargetTrackingScalingPolicyConfiguration", {})
            found.append(
                ResourceStatus(
                    "scaling policy",
                    policy["PolicyName"],
                    "active",
                    f"target {conf.get('TargetValue')} invocations/instance, cooldowns "
                    f"in {conf.get('ScaleInCooldown')} s / out {conf.get('ScaleOutCooldown')} s",
                )
            )
    return found


# ---------------------------------------------------------------- Lambda


def describe_lambda(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    """The function (alias, concurrency, URL), its provisioned concurrency, its role."""
    found = []
    fn = lambda_fn.describe(ctx, cfg)
    if fn is not None:
        parts = [f"{fn['runtime']} {fn['architecture']} {fn['memory_mb']} MB"]
        alias, pc = fn.get("alias"), fn.get("provisioned_concurrency")
        if alias:
            parts.append(f"alias {alias['name']} -> version {alias['version']}")
        if fn.get("reserved_concurrency") is not None:
            parts.append(f"reserved concurrency {fn['reserved_concurrency']}")
        if fn.get("url"):
            parts.append(f"url {fn['url']}")
        found.append(ResourceStatus("lambda function", fn["name"], fn["state"], "; ".join(parts)))
        if pc and alias:
            # Billed per GB-second while configured, whether or not it serves anything.
            cost = provisioned_concurrency_cost(
                ctx.region, fn["architecture"], int(fn["memory_mb"] or 128), pc["requested"]
            )
            found.append(
                ResourceStatus(
                    "provisioned concurrency",
                    f"{fn['name']}:{alias['name']}",
                    pc["status"],
                    f"{pc['requested']} environments x {fn['memory_mb']} MB, billed while set",
                    cost,
                    True,
                )
            )
    role = fn["role"] if fn is not None else iam.describe_role(ctx, cfg)
    if role:
        policies = role["inline_policies"] + role["attached_policies"]
        found.append(
            ResourceStatus(
                "iam role", role["name"], "exists", "policies: " + (", ".join(policies) or "none")
            )
        )
    if fn is not None and fn.get("log_group"):
        found.append(ResourceStatus("log group", fn["log_group"], "exists", "the function's logs"))
    return found


# ---------------------------------------------------------------- endpoint, configs, models


def describe_endpoint(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    endpoint = endpoints.describe_endpoint(ctx, cfg.names.endpoint)
    if endpoint is None:
        return []
    if serverless.endpoint_is_serverless(endpoint):
        return [describe_serverless_endpoint(ctx, cfg, endpoint)]
    status = endpoint["EndpointStatus"]
    types = endpoints.variant_types(ctx, endpoint["EndpointConfigName"])
    parts, total, unknown = [], 0.0, False
    for variant in endpoint.get("ProductionVariants", []):
        count = int(variant.get("CurrentInstanceCount", 0))
        instance_type = types.get(variant["VariantName"], "?")
        parts.append(f"{variant['VariantName']}: {count} x {instance_type}")
        cost = instances_cost(ctx.region, "hosting", instance_type, count)
        if cost is None:
            unknown = unknown or count > 0
        else:
            total += cost
    running = status in ("InService", "Creating", "Updating", "SystemUpdating", "RollingBack")
    details = "; ".join(parts) + f"; config {endpoint['EndpointConfigName']}"
    if endpoint.get("FailureReason"):
        details += f"; {endpoint['FailureReason']}"
    return [
        ResourceStatus(
            "endpoint",
            endpoint["EndpointName"],
            status,
            details,
            None if unknown or not running else total,
            running,
        )
    ]


def describe_serverless_endpoint(
    ctx: AwsContext, cfg: DogclfConfig, endpoint: dict[str, Any]
) -> ResourceStatus:
    """Billed per second of inference (and per hour for provisioned concurrency), priced
    against one real-time instance of endpoint.instance_type."""
    (variant,) = endpoint["ProductionVariants"][:1]  # serverless: one variant only
    config = serverless.variant_serverless(variant) or {}
    provisioned = int(config.get("ProvisionedConcurrency") or 0)
    price = serverless_price(
        ctx.region, int(config.get("MemorySizeInMB", 0)), provisioned, cfg.endpoint.instance_type
    )
    rate = "unknown" if price.per_second is None else f"${price.per_second:.6f}"
    details = (
        f"{variant['VariantName']}: {serverless.describe_serverless(config)}; {rate} per "
        f"second of inference; config {endpoint['EndpointConfigName']}"
    )
    if endpoint.get("FailureReason"):
        details += f"; {endpoint['FailureReason']}"
    status = endpoint["EndpointStatus"]
    held = bool(provisioned) and status not in ("Failed", "OutOfService", "Deleting")
    return ResourceStatus(
        "endpoint",
        endpoint["EndpointName"],
        status,
        details,
        price.provisioned_hourly if held else None,
        held,  # only provisioned concurrency bills by the hour; requests bill per second
        price.as_dict(),
    )


def describe_endpoint_logs(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    """SageMaker's log group for the endpoint: it outlives the endpoint and never expires."""
    name = logs.endpoint_log_group(cfg.names.endpoint)
    group = logs.describe_log_group(ctx, name)
    if group is None:
        return []
    days = group.get("retentionInDays")
    kept = f"kept {days} days" if days else "never expires"
    stored = int(group.get("storedBytes", 0))
    return [ResourceStatus("log group", name, "exists", f"{stored / 1e6:.1f} MB stored, {kept}")]


def record_kind(name: str, record: endpoints.RecordKind, why_delete: str) -> ResourceKind:
    """Endpoint configs or models: listed by name, deleted with `why_delete` as the message."""

    def describe(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
        names = endpoints.record_names(ctx, cfg, record)
        return [ResourceStatus(record.resource, n, "exists") for n in names]

    def delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
        return endpoints.record_delete_steps(ctx, cfg, record, why_delete)

    return ResourceKind(name, describe, delete_steps)


# ---------------------------------------------------------------- jobs in flight


def describe_training_jobs(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    found = []
    for job in jobs_in_flight.training_jobs_in_flight(ctx, cfg):
        resources = job.get("ResourceConfig", {})
        count, instance_type = (
            int(resources.get("InstanceCount", 1)),
            resources.get("InstanceType", "?"),
        )
        spot = job.get("EnableManagedSpotTraining", False)
        details = f"{count} x {instance_type}" + (
            " spot (at most the on-demand price)" if spot else ""
        )
        if job.get("TuningJobArn"):
            details += f"; tuning {job['TuningJobArn'].rsplit('/', 1)[-1]}"
        found.append(
            ResourceStatus(
                "training job",
                job["TrainingJobName"],
                f"{job['TrainingJobStatus']} ({job.get('SecondaryStatus', '')})",
                details,
                instances_cost(ctx.region, "training", instance_type, count),
                True,
            )
        )
    return found


def describe_tuning_jobs(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    statuses = []
    for job in jobs_in_flight.in_flight(ctx, cfg, jobs_in_flight.TUNING):
        counts = job.get("TrainingJobStatusCounters", {})
        statuses.append(
            ResourceStatus(
                "tuning job",
                job["HyperParameterTuningJobName"],
                job["HyperParameterTuningJobStatus"],
                f"{counts.get('Completed', 0)} done, {counts.get('InProgress', 0)} running "
                "(their cost shows on the training jobs)",
            )
        )
    return statuses


def describe_training_logs(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    """Our streams in the account's training log group (the API gives no per-stream size)."""
    streams = logs.training_streams(ctx, cfg)
    if not streams:
        return []
    jobs = len({s["logStreamName"].split("/", 1)[0] for s in streams})
    return [
        ResourceStatus(
            "log streams",
            f"{logs.TRAINING_LOG_GROUP} ({cfg.names.base} jobs)",
            "exists",
            f"{len(streams)} streams of {jobs} training job(s), never expire",
        )
    ]


# ---------------------------------------------------------------- S3: latest model, data


def describe_latest(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    if not cfg.aws.bucket or not s3.bucket_exists(ctx, cfg.aws.bucket):
        return []
    latest = read_latest(ctx, cfg)
    if latest is None:
        return []
    metrics = ", ".join(
        f"{k}={v:.4g}" for k, v in sorted(latest.metrics.items()) if isinstance(v, int | float)
    )
    return [
        ResourceStatus(
            "latest model",
            latest.model_data,
            "set",
            f"from {latest.source} at {latest.created}" + (f"; {metrics}" if metrics else ""),
        )
    ]


def describe_data(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    if not cfg.aws.bucket:
        return [ResourceStatus("s3 bucket", "-", "not configured", "set aws.bucket")]
    if not s3.bucket_exists(ctx, cfg.aws.bucket):
        return [
            ResourceStatus(
                "s3 bucket", cfg.aws.bucket, "missing", "`dogclf upload --create-bucket`"
            )
        ]
    bucket, prefix, objects = s3.stage_objects(ctx, cfg)
    groups: dict[str, list[int]] = {}
    for obj in objects:
        top = obj.key.removeprefix(prefix).split("/", 1)[0]
        if top != "checkpoints":  # a kind of its own: teardown removes them without --data
            groups.setdefault(top, []).append(obj.size)
    found = [ResourceStatus("s3 bucket", bucket, "exists", f"stage prefix s3://{bucket}/{prefix}")]
    if s3.is_versioned(ctx, bucket):
        stored = s3.stored_under(ctx, bucket, prefix, skip=s3.checkpoint_prefix(cfg))
        found.append(
            ResourceStatus(
                "s3 versions",
                f"s3://{bucket}/{prefix}",
                "stored",
                f"versioned bucket: {len(stored.entries)} versions and delete markers, "
                f"{stored.size / 1e6:.1f} MB (teardown --data deletes every one)",
            )
        )
    for top, sizes in sorted(groups.items()):
        found.append(
            ResourceStatus(
                "s3 objects",
                f"s3://{bucket}/{prefix}{top}/",
                "stored",
                f"{len(sizes)} objects, {sum(sizes) / 1e6:.1f} MB",
            )
        )
    return found


def describe_checkpoints(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    stored = s3.checkpoints(ctx, cfg)
    if stored is None:
        return []
    uri = f"s3://{cfg.aws.bucket}/{s3.checkpoint_prefix(cfg)}"
    found = [ResourceStatus("checkpoints", uri, "stored", f"spot checkpoints: {stored.summary()}")]
    caches = feature_cache_store.stage_caches(ctx, cfg)
    if caches.objects:  # inside checkpoints/: teardown removes it with them
        found.append(
            ResourceStatus(
                "feature caches",
                caches.uri,
                "stored",
                f"{len(caches.keys)} complete, {caches.objects} objects, "
                f"{caches.size / 1e6:.1f} MB (later jobs' input channel)",
            )
        )
    return found


# ---------------------------------------------------------------- the list

KINDS: list[ResourceKind] = [
    ResourceKind("autoscaling", describe_autoscaling, autoscaling.delete_steps),
    ResourceKind("lambda", describe_lambda, lambda_fn.delete_steps),  # calls the endpoint
    ResourceKind("endpoint", describe_endpoint, endpoints.endpoint_delete_steps),
    # SageMaker's log group goes after the endpoint, which would write to it again.
    ResourceKind("endpoint logs", describe_endpoint_logs, logs.endpoint_log_delete_steps),
    record_kind("endpoint configs", endpoints.CONFIGS, "unused once the endpoint is gone"),
    record_kind("models", endpoints.MODELS, "its SageMaker record (model.tar.gz in S3 is data)"),
    ResourceKind("tuning jobs", describe_tuning_jobs, jobs_in_flight.tuning_stop_steps),
    ResourceKind("training jobs", describe_training_jobs, jobs_in_flight.training_stop_steps),
    # Derived, so removed without --data; after the jobs that write them are stopped.
    ResourceKind("training logs", describe_training_logs, logs.training_log_delete_steps),
    ResourceKind("checkpoints", describe_checkpoints, s3.checkpoint_delete_steps),
    ResourceKind("latest model", describe_latest),  # goes with the data
    ResourceKind("data", describe_data, s3.stage_delete_steps, opt_in="data"),
]


def describe_all(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    return [status for kind in KINDS for status in kind.describe(ctx, cfg)]


def delete_steps(ctx: AwsContext, cfg: DogclfConfig, *, opt_in: set[str]) -> list[Step]:
    steps: list[Step] = []
    for kind in KINDS:
        if kind.delete_steps and (kind.opt_in is None or kind.opt_in in opt_in):
            steps += kind.delete_steps(ctx, cfg)
    return steps
