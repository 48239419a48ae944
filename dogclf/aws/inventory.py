"""What this project/stage owns on AWS: one list of resource kinds for `status` and `teardown`.

Protocol. A kind is `ResourceKind(name, describe, delete_steps, opt_in=None)`:
- `describe(ctx, cfg)` returns what exists: a list of `ResourceStatus`; or, for a kind with
  one resource, a dict with at least "name" and "state" (other keys become details;
  "hourly_cost" / "running" are read if present); None or [] when nothing exists.
- `delete_steps(ctx, cfg)` returns `dogclf.plan.Step`s (action DELETE) in the order they
  must run, [] when nothing exists. Each step's apply must succeed when the thing is
  already gone, so teardown can run twice.
- `opt_in` names the teardown flag that includes the kind (e.g. "data" for `--data`);
  None: always torn down. `status` shows every kind.
`KINDS` is in teardown order: what depends on something comes before it. To add a kind,
add one entry at its place in the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from dogclf.aws import autoscaling, endpoints, iam, lambda_fn
from dogclf.aws.artifacts import parse_s3_uri, read_latest
from dogclf.aws.pricing import instances_cost, provisioned_concurrency_cost
from dogclf.aws.s3 import bucket_exists, delete_keys, list_objects_parallel
from dogclf.aws.session import AwsContext, aws_errors, call, error_code, get_or_none, translate
from dogclf.plan import Action, Step

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Describe = Callable[["AwsContext", "DogclfConfig"], Any]
DeleteSteps = Callable[["AwsContext", "DogclfConfig"], list[Step]]


@dataclass(frozen=True)
class ResourceKind:
    name: str
    describe: Describe
    delete_steps: DeleteSteps
    opt_in: str | None = None


def as_statuses(kind: str, described: Any) -> list[ResourceStatus]:
    """Normalise what a kind's describe returned (see the protocol above)."""
    if not described:
        return []
    if isinstance(described, ResourceStatus):
        return [described]
    if isinstance(described, dict):
        rest = {
            k: v
            for k, v in described.items()
            if k not in ("name", "state", "hourly_cost", "running") and v not in (None, [], {})
        }
        return [
            ResourceStatus(
                kind,
                str(described.get("name", kind)),
                str(described.get("state", "exists")),
                ", ".join(f"{k}={v}" for k, v in rest.items()),
                described.get("hourly_cost"),
                bool(described.get("running", False)),
            )
        ]
    return list(described)


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
    status = endpoint["EndpointStatus"]
    config = get_or_none(
        "describe the endpoint's config",
        ctx.client("sagemaker").describe_endpoint_config,
        EndpointConfigName=endpoint["EndpointConfigName"],
    )
    types = {
        v["VariantName"]: v.get("InstanceType", "?")
        for v in (config or {}).get("ProductionVariants", [])
    }
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


def endpoint_delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    name = cfg.names.endpoint
    endpoint = endpoints.describe_endpoint(ctx, name)
    if endpoint is None:
        return []
    sm = ctx.client("sagemaker")

    def delete() -> None:
        if endpoint["EndpointStatus"] != "Deleting":
            get_or_none(f"delete endpoint {name}", sm.delete_endpoint, EndpointName=name)
        endpoints.wait_deleted(ctx, name)  # configs and models go next; then it is all gone

    return [
        Step(
            Action.DELETE,
            "endpoint",
            name,
            f"{endpoint['EndpointStatus']}; waits until gone",
            delete,
        )
    ]


def describe_configs(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    names = endpoints.list_names(
        ctx, "EndpointConfigs", endpoints.config_pattern(cfg), cfg.names.base
    )
    return [ResourceStatus("endpoint config", n, "exists") for n in names]


def config_delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    sm = ctx.client("sagemaker")
    return [
        Step(
            Action.DELETE,
            "endpoint config",
            s.name,
            "unused once the endpoint is gone",
            endpoints.deleter(sm.delete_endpoint_config, EndpointConfigName=s.name),
        )
        for s in describe_configs(ctx, cfg)
    ]


def describe_models(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    names = endpoints.list_names(ctx, "Models", endpoints.model_pattern(cfg), cfg.names.base)
    return [ResourceStatus("sagemaker model", n, "exists") for n in names]


def model_delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    sm = ctx.client("sagemaker")
    return [
        Step(
            Action.DELETE,
            "sagemaker model",
            s.name,
            "its SageMaker record (model.tar.gz in S3 is data)",
            endpoints.deleter(sm.delete_model, ModelName=s.name),
        )
        for s in describe_models(ctx, cfg)
    ]


# ---------------------------------------------------------------- jobs in flight

IN_FLIGHT = ("InProgress", "Stopping")


def _ours(ctx: AwsContext, cfg: DogclfConfig, arn: str) -> bool:
    """Tagged with this project and stage (a name prefix alone could be another stage's)."""
    tags = call("read tags", ctx.client("sagemaker").list_tags, ResourceArn=arn).get("Tags", [])
    found = {t["Key"]: t["Value"] for t in tags}
    return found.get("dogclf:project") == cfg.project and found.get("dogclf:stage") == cfg.stage


def training_jobs_in_flight(ctx: AwsContext, cfg: DogclfConfig) -> list[dict[str, Any]]:
    sm = ctx.client("sagemaker")
    jobs = []
    with aws_errors("list training jobs in flight"):
        for status in IN_FLIGHT:
            for page in sm.get_paginator("list_training_jobs").paginate(
                NameContains=cfg.names.base, StatusEquals=status
            ):
                jobs += [
                    j for j in page["TrainingJobSummaries"] if _ours(ctx, cfg, j["TrainingJobArn"])
                ]
    return [
        call(
            "describe training job", sm.describe_training_job, TrainingJobName=j["TrainingJobName"]
        )
        for j in jobs
    ]


def describe_training_jobs(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    found = []
    for job in training_jobs_in_flight(ctx, cfg):
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


def _stop_quietly(what: str, fn: Callable[..., Any], **kwargs: Any) -> Callable[[], None]:
    """Stop a job; one that already ended (or is ending) needs nothing."""

    def run() -> None:
        try:
            fn(**kwargs)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "ValidationException" and "status" in str(exc):
                return
            raise translate(exc, what) from exc

    return run


def training_stop_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    sm = ctx.client("sagemaker")
    return [
        Step(
            Action.DELETE,
            "training job",
            job["TrainingJobName"],
            "stop (its logs and any model already written stay)",
            _stop_quietly(
                "stop the training job",
                sm.stop_training_job,
                TrainingJobName=job["TrainingJobName"],
            ),
        )
        for job in training_jobs_in_flight(ctx, cfg)
        # A tuning job's own jobs stop with it (the tuning kind runs first).
        if job["TrainingJobStatus"] == "InProgress" and not job.get("TuningJobArn")
    ]


def tuning_jobs_in_flight(ctx: AwsContext, cfg: DogclfConfig) -> list[dict[str, Any]]:
    sm = ctx.client("sagemaker")
    found = []
    with aws_errors("list tuning jobs in flight"):
        for status in IN_FLIGHT:
            for page in sm.get_paginator("list_hyper_parameter_tuning_jobs").paginate(
                NameContains=cfg.names.base, StatusEquals=status
            ):
                found += [
                    j
                    for j in page["HyperParameterTuningJobSummaries"]
                    if _ours(ctx, cfg, j["HyperParameterTuningJobArn"])
                ]
    return found


def describe_tuning_jobs(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    statuses = []
    for job in tuning_jobs_in_flight(ctx, cfg):
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


def tuning_stop_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    sm = ctx.client("sagemaker")
    return [
        Step(
            Action.DELETE,
            "tuning job",
            job["HyperParameterTuningJobName"],
            "stop it and its running training jobs",
            _stop_quietly(
                "stop the tuning job",
                sm.stop_hyper_parameter_tuning_job,
                HyperParameterTuningJobName=job["HyperParameterTuningJobName"],
            ),
        )
        for job in tuning_jobs_in_flight(ctx, cfg)
        if job["HyperParameterTuningJobStatus"] == "InProgress"
    ]


# ---------------------------------------------------------------- S3: latest model, data


def describe_latest(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    if not cfg.aws.bucket or not bucket_exists(ctx, cfg.aws.bucket):
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


def _stage_objects(ctx: AwsContext, cfg: DogclfConfig) -> tuple[str, str, list[Any]]:
    bucket, prefix = parse_s3_uri(cfg.s3_prefix() + "/")
    return bucket, prefix, list_objects_parallel(ctx, bucket, prefix)


def describe_data(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    if not cfg.aws.bucket:
        return [ResourceStatus("s3 bucket", "-", "not configured", "set aws.bucket")]
    if not bucket_exists(ctx, cfg.aws.bucket):
        return [
            ResourceStatus(
                "s3 bucket", cfg.aws.bucket, "missing", "`dogclf upload --create-bucket`"
            )
        ]
    bucket, prefix, objects = _stage_objects(ctx, cfg)
    groups: dict[str, list[int]] = {}
    for obj in objects:
        top = obj.key.removeprefix(prefix).split("/", 1)[0]
        groups.setdefault(top, []).append(obj.size)
    found = [ResourceStatus("s3 bucket", bucket, "exists", f"stage prefix s3://{bucket}/{prefix}")]
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


def data_delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    if not cfg.aws.bucket or not bucket_exists(ctx, cfg.aws.bucket):
        return []
    bucket, prefix, objects = _stage_objects(ctx, cfg)
    keys = sorted(o.key for o in objects)
    steps = []
    if keys:
        steps.append(
            Step(
                Action.DELETE,
                "s3 objects",
                f"s3://{bucket}/{prefix}",
                f"{len(keys)} objects: data, code, models, checkpoints",
                lambda: delete_keys(ctx, bucket, keys),
            )
        )
    if _bucket_is_ours(ctx, cfg, bucket) and not _others_in_bucket(ctx, bucket, prefix, keys):
        steps.append(
            Step(
                Action.DELETE,
                "s3 bucket",
                bucket,
                f"created for {cfg.project}/{cfg.stage}, empty once its objects are gone",
                endpoints.deleter(ctx.client("s3").delete_bucket, Bucket=bucket),
            )
        )
    return steps


def _bucket_is_ours(ctx: AwsContext, cfg: DogclfConfig, bucket: str) -> bool:
    """Tagged with this project/stage: `upload --create-bucket` made it for this stage."""
    found = get_or_none(
        f"read the tags of bucket {bucket}", ctx.client("s3").get_bucket_tagging, Bucket=bucket
    )
    tags = {t["Key"]: t["Value"] for t in (found or {}).get("TagSet", [])}
    return tags.get("dogclf:project") == cfg.project and tags.get("dogclf:stage") == cfg.stage


def _others_in_bucket(ctx: AwsContext, bucket: str, prefix: str, ours: list[str]) -> bool:
    """Any key outside our prefix: keys list in order, so look before it and after it."""
    s3 = ctx.client("s3")
    with aws_errors(f"list bucket {bucket}"):
        first = s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("Contents", [])
        if first and not first[0]["Key"].startswith(prefix):
            return True
        after = ours[-1] if ours else prefix
        rest = s3.list_objects_v2(Bucket=bucket, MaxKeys=1, StartAfter=after).get("Contents", [])
    return bool(rest) and not rest[0]["Key"].startswith(prefix)


def _nothing(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    return []


# ---------------------------------------------------------------- the list

KINDS: list[ResourceKind] = [
    ResourceKind("autoscaling", describe_autoscaling, autoscaling.delete_steps),
    ResourceKind("lambda", describe_lambda, lambda_fn.delete_steps),  # calls the endpoint
    ResourceKind("endpoint", describe_endpoint, endpoint_delete_steps),
    ResourceKind("endpoint configs", describe_configs, config_delete_steps),
    ResourceKind("models", describe_models, model_delete_steps),
    ResourceKind("tuning jobs", describe_tuning_jobs, tuning_stop_steps),
    ResourceKind("training jobs", describe_training_jobs, training_stop_steps),
    ResourceKind("latest model", describe_latest, _nothing),
    ResourceKind("data", describe_data, data_delete_steps, opt_in="data"),
]


def describe_all(ctx: AwsContext, cfg: DogclfConfig) -> list[ResourceStatus]:
    found: list[ResourceStatus] = []
    for kind in KINDS:
        found += as_statuses(kind.name, kind.describe(ctx, cfg))
    return found


def delete_steps(ctx: AwsContext, cfg: DogclfConfig, *, opt_in: set[str]) -> list[Step]:
    steps: list[Step] = []
    for kind in KINDS:
        if kind.opt_in is None or kind.opt_in in opt_in:
            steps += kind.delete_steps(ctx, cfg)
    return steps
