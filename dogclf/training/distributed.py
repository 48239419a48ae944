"""torch.distributed set-up for torchrun, SageMaker multi-instance jobs, and one process.

torchrun (and SageMaker's torch_distributed launcher, which runs torchrun on every host)
sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR. A SageMaker job with several instances
but no launcher only sets SM_HOSTS / SM_CURRENT_HOST: then each host runs one process and
we join them from those, so N instances split the data instead of training N copies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEFAULT_PORT = 29500


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_for_sagemaker_hosts(environ: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed variables derived from SM_HOSTS when no launcher set them."""
    if "WORLD_SIZE" in environ:
        return {}
    try:
        hosts = json.loads(environ.get("SM_HOSTS", "[]"))
    except json.JSONDecodeError:
        return {}
    current = environ.get("SM_CURRENT_HOST", "")
    if len(hosts) < 2 or current not in hosts:
        return {}
    hosts = sorted(hosts)  # algo-1 first: the same order on every host
    return {
        "WORLD_SIZE": str(len(hosts)),
        "RANK": str(hosts.index(current)),
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": hosts[0],
        "MASTER_PORT": environ.get("MASTER_PORT", str(DEFAULT_PORT)),
    }


def setup(device: torch.device) -> DistInfo:
    """Join the process group when there is one: nccl on GPU, gloo on CPU."""
    os.environ.update(env_for_sagemaker_hosts(os.environ))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def device_for(preference: str, local_rank: int) -> torch.device:
    """`auto` picks this rank's GPU when there is one, else the CPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but no CUDA GPU is available")
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device(preference)


def local_rank_from_env() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_ints(value: int) -> list[int]:
    """One int from every rank, in rank order (e.g. how many samples each rank saw)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[int] = [0] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return [int(v) for v in gathered]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
