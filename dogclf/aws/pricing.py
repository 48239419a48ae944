"""Instance (and Lambda provisioned concurrency) prices per region from dogclf/data/prices.json (with its date and source).

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

    def sagemaker_hourly(self, region: str, usage: Usage, instance_type: str) -> float | None:
        return self.sagemaker.get(region, {}).get(usage, {}).get(instance_type)

    def provisioned_gb_second(self, region: str, architecture: str) -> float | None:
        by_arch = self.lambda_.get(region, {}).get("provisioned_concurrency_gb_second", {})
        return by_arch.get(architecture)

    def provenance(self) -> dict[str, Any]:
        return {"as_of": self.as_of, "source": self.source, "verified": self.verified}


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
