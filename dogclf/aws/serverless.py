"""Serverless endpoints: the variant deploy sends, AWS's limits, and what differs from real-time.

AWS's rules, from its guide ("Deploy models with Amazon SageMaker Serverless Inference":
feature exclusions; "Invoke a serverless endpoint") and botocore's sagemaker model
(ProductionVariantServerlessConfig):
- memory 1024-6144 MB in 1 GB steps, 1-200 concurrent requests, provisioned concurrency
  1-200 and <= the maximum (checked in config.py);
- CPUs only: no GPUs, no multiple production variants, no data capture, no VPC or network
  isolation, no Model Monitor (dogclf deploys one variant and uses none of the others);
- requests and responses of at most 4 MB (real-time: 6 MB); the container must answer
  /invocations within 60 s, as on real-time, and /ping within 3 minutes of starting;
- an instance-based endpoint cannot be updated into a serverless one (UpdateEndpoint fails
  with a ValidationError); a serverless one can be updated into real-time;
- it scales itself: Application Auto Scaling only moves its provisioned concurrency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dogclf.errors import DogclfError
from dogclf.units import MiB

if TYPE_CHECKING:
    from dogclf.aws.session import AwsContext
    from dogclf.config import DogclfConfig

SERVERLESS_MAX_PAYLOAD_BYTES = 4 * MiB
REALTIME_MAX_PAYLOAD_BYTES = 6 * MiB
# AWS's advice for serverless containers: one worker, one copy of the model (the real-time
# sizing, one worker per vCPU, assumes a known instance).
SERVERLESS_WORKERS = 1


def is_serverless(cfg: DogclfConfig) -> bool:
    return cfg.endpoint.mode == "serverless"


def serverless_config(cfg: DogclfConfig) -> dict[str, int]:
    """The variant's ServerlessConfig, as CreateEndpointConfig takes it."""
    e = cfg.endpoint
    config = {"MemorySizeInMB": e.memory_mb, "MaxConcurrency": e.max_concurrency}
    if e.provisioned_concurrency is not None:
        config["ProvisionedConcurrency"] = e.provisioned_concurrency
    return config


def describe_serverless(config: dict[str, Any]) -> str:
    """`serverless 2048 MB, max concurrency 5, provisioned 1` for plans and `status`."""
    text = f"serverless {config.get('MemorySizeInMB')} MB, max concurrency {config.get('MaxConcurrency')}"
    if config.get("ProvisionedConcurrency"):
        text += f", provisioned {config['ProvisionedConcurrency']}"
    return text


def variant_serverless(variant: dict[str, Any]) -> dict[str, Any] | None:
    """A variant's serverless config, from an endpoint config (ServerlessConfig) or a
    DescribeEndpoint answer (Current/DesiredServerlessConfig); None: instance-based."""
    for key in ("CurrentServerlessConfig", "DesiredServerlessConfig", "ServerlessConfig"):
        if variant.get(key):
            return dict(variant[key])
    return None


def endpoint_is_serverless(described: dict[str, Any]) -> bool:
    return any(variant_serverless(v) for v in described.get("ProductionVariants", []))


def max_request_bytes(cfg: DogclfConfig, configured_mb: float) -> int:
    """What a client may send the endpoint: its own setting, within AWS's cap for the mode."""
    cap = SERVERLESS_MAX_PAYLOAD_BYTES if is_serverless(cfg) else REALTIME_MAX_PAYLOAD_BYTES
    return min(int(configured_mb * MiB), cap)


def scale_note(ctx: AwsContext, cfg: DogclfConfig) -> str | None:
    """`scale`'s one line when the endpoint is (or is configured) serverless; None: go on
    with instance auto-scaling. A serverless endpoint under a real-time config is an error:
    AWS would refuse instance-count scaling on it."""
    from dogclf.aws.endpoints import describe_endpoint  # endpoints imports this module

    e, name = cfg.endpoint, cfg.names.endpoint
    endpoint = describe_endpoint(ctx, name)
    serverless_now = endpoint is not None and endpoint_is_serverless(endpoint)
    if serverless_now and not is_serverless(cfg):
        raise DogclfError(
            f'endpoint {name} is serverless but endpoint.mode is "realtime"',
            "run `dogclf deploy` first (it switches the endpoint to real-time), then `dogclf scale`",
        )
    if not is_serverless(cfg):
        return None
    which = f"endpoint {name} is serverless" if serverless_now else 'endpoint.mode is "serverless"'
    return (
        f"{which}: it scales itself, from zero up to endpoint.max_concurrency "
        f"({e.max_concurrency}) concurrent requests; to change that, set endpoint.max_concurrency "
        "(or endpoint.provisioned_concurrency, pre-warmed) and run `dogclf deploy`"
    )
