"""Instance (and Lambda provisioned concurrency) prices per region from dogclf/data/prices.json (with its date and source).

Serverless endpoints have their own dated block ("sagemaker_serverless"): per GB-second of
inference, per GB-second of provisioned concurrency while it is set, per GB of data; and
`serverless_crossover` says how much inference an hour one real-time instance is worth.

The same file holds vCPUs per ml.* instance type ("instances", with its own date and
source): how `deploy` sizes the model server's workers and threads.

A region or instance type the file does not list has no price: callers show "unknown"
rather than a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

Usage = Literal["hosting", "training"]


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    source: str
    verified: bool
    sagemaker: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    lambda_: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    vcpus: dict[str, int] = field(default_factory=dict)
    serverless: dict[str, Any] = field(default_factory=dict)

    def sagemaker_hourly(self, region: str, usage: Usage, instance_type: str) -> float | None:
        return self.sagemaker.get(region, {}).get(usage, {}).get(instance_type)

    def provisioned_gb_second(self, region: str, architecture: str) -> float | None:
        by_arch = self.lambda_.get(region, {}).get("provisioned_concurrency_gb_second", {})
        return by_arch.get(architecture)

    def serverless_rate(self, region: str, kind: str) -> float | None:
        """USD per GB-second (or per GB for data) of a serverless price `kind`."""
        rate = self.serverless.get(region, {}).get(kind)
        return None if rate is None else float(rate)

    def provenance(self) -> dict[str, Any]:
        return {"as_of": self.as_of, "source": self.source, "verified": self.verified}

    def serverless_provenance(self) -> dict[str, Any]:
        s = self.serverless
        return {"as_of": s.get("as_of"), "source": s.get("source"), "verified": s.get("verified")}


@lru_cache(maxsize=1)
def load_prices() -> PriceTable:
    text = resources.files("dogclf").joinpath("data/prices.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return PriceTable(
        as_of=data["as_of"],
        source=data["source"],
        verified=bool(data.get("verified", False)),
        sagemaker=data.get("sagemaker", {}),
        lambda_=data.get("lambda", {}),
        vcpus=data.get("instances", {}).get("vcpus", {}),
        serverless=data.get("sagemaker_serverless", {}),
    )


def vcpu_count(instance_type: str) -> int | None:
    """The ml.* type's vCPUs, or None when the table does not list it."""
    return load_prices().vcpus.get(instance_type)


def instances_cost(region: str, usage: Usage, instance_type: str, count: int) -> float | None:
    """count x the hourly price, or None when the price is unknown."""
    price = load_prices().sagemaker_hourly(region, usage, instance_type)
    return None if price is None else price * count


def provisioned_concurrency_cost(
    region: str, architecture: str, memory_mb: int, environments: int
) -> float | None:
    """Hourly cost of Lambda provisioned concurrency, or None when the price is unknown."""
    price = load_prices().provisioned_gb_second(region, architecture)
    if price is None:
        return None
    return price * 3600 * (memory_mb / 1024) * environments


# ---------------------------------------------------------------- serverless endpoints


@dataclass(frozen=True)
class ServerlessPrice:
    """What a serverless endpoint of `memory_mb` costs, and where one real-time instance of
    `instance_type` becomes cheaper. None where prices.json has no figure."""

    memory_mb: int
    per_second: float | None  # USD per second of inference at this memory size
    provisioned_hourly: float | None  # USD per hour for the provisioned concurrency set
    instance_type: str
    instance_hourly: float | None
    data_per_gb: float | None

    @property
    def crossover_seconds_per_hour(self) -> float | None:
        """Seconds of inference per hour above which the real-time instance costs less (the
        provisioned concurrency billed either way counts against serverless); 0: already."""
        if self.per_second is None or self.instance_hourly is None:
            return None
        return max(0.0, (self.instance_hourly - (self.provisioned_hourly or 0.0)) / self.per_second)

    def crossover_requests_per_hour(self, request_seconds: float) -> float | None:
        seconds = self.crossover_seconds_per_hour
        return None if seconds is None else seconds / request_seconds

    def as_dict(self) -> dict[str, Any]:
        rates = {f"{ms} ms": self.crossover_requests_per_hour(ms / 1000) for ms in (1000, 200)}
        compared = {"instance_type": self.instance_type, "usd_per_hour": self.instance_hourly}
        return {
            "memory_mb": self.memory_mb,
            "compared_with": compared,
            "usd_per_inference_second": self.per_second,
            "crossover_requests_per_hour": rates,
            "provisioned_usd_per_hour": self.provisioned_hourly,
            "prices": load_prices().serverless_provenance(),
            "data_usd_per_gb": self.data_per_gb,
            "crossover_inference_seconds_per_hour": self.crossover_seconds_per_hour,
        }


def serverless_price(
    region: str, memory_mb: int, provisioned: int | None, instance_type: str
) -> ServerlessPrice:
    table, gb = load_prices(), memory_mb / 1024
    rate = table.serverless_rate(region, "inference_gb_second")
    held = table.serverless_rate(region, "provisioned_concurrency_gb_second")
    provisioned_hourly = None
    if provisioned:
        provisioned_hourly = None if held is None else held * gb * 3600 * provisioned
    return ServerlessPrice(
        memory_mb,
        None if rate is None else rate * gb,
        provisioned_hourly,
        instance_type,
        table.sagemaker_hourly(region, "hosting", instance_type),
        table.serverless_rate(region, "data_processed_gb"),
    )
