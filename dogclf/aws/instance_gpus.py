"""How many GPUs an ml.* training instance has, offline: whether torchrun is worth starting.

Sources (read 2026-12-01): the SageMaker SDK's own table,
sagemaker/core/image_uri_config/instance_gpu_info.json (sagemaker 3.27; it lacks
ml.g5.xlarge and the g6/g6e/p5e/p5en families), and for those EC2's accelerated-computing
sizes (torchx's torchx/specs/named_resources_aws.py lists g5/g6e the same way: 1 GPU up to
16xlarge, 4 at 12xlarge/24xlarge, 8 at 48xlarge; p5e/p5en are 8 x H200). The SDK's table is
read by tests/test_aws_training.py: every type both hold must agree.
"""

from __future__ import annotations

_ONE_GPU_SIZES = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")


def _family(
    name: str, one: tuple[str, ...], four: tuple[str, ...], eight: tuple[str, ...]
) -> dict[str, int]:
    table = {f"ml.{name}.{size}": 1 for size in one}
    table.update({f"ml.{name}.{size}": 4 for size in four})
    table.update({f"ml.{name}.{size}": 8 for size in eight})
    return table


GPU_COUNTS: dict[str, int] = {
    **_family("g4dn", _ONE_GPU_SIZES, ("12xlarge",), ()),
    **_family("g5", _ONE_GPU_SIZES, ("12xlarge", "24xlarge"), ("48xlarge",)),
    **_family("g6", _ONE_GPU_SIZES, ("12xlarge", "24xlarge"), ("48xlarge",)),
    **_family("g6e", _ONE_GPU_SIZES, ("12xlarge", "24xlarge"), ("48xlarge",)),
    **_family("p3", ("2xlarge",), ("8xlarge",), ("16xlarge",)),
    "ml.p3dn.24xlarge": 8,
    "ml.p4d.24xlarge": 8,
    "ml.p4de.24xlarge": 8,
    "ml.p5.48xlarge": 8,
    "ml.p5e.48xlarge": 8,
    "ml.p5en.48xlarge": 8,
}

# Families with accelerators (NVIDIA GPUs, Trainium/Inferentia NeuronCores): a type of
# theirs missing above may have several, so the launcher should count them itself.
ACCELERATED_PREFIXES = ("ml.g", "ml.p", "ml.trn", "ml.inf")


def gpu_count(instance_type: str) -> int | None:
    """The type's GPUs: 0 for a CPU type, None for an accelerated type not in the table."""
    if instance_type in GPU_COUNTS:
        return GPU_COUNTS[instance_type]
    return None if instance_type.startswith(ACCELERATED_PREFIXES) else 0


def wants_torchrun(instance_type: str, instance_count: int) -> bool:
    """Several hosts, or one with several GPUs (or an unknown count: torchrun then starts
    one process per GPU the launcher finds, which is one on a single-GPU host). One GPU or
    a CPU on one host runs the program directly: the launcher's torchrun would start one
    process there (nproc_per_node = GPUs, else 1) behind an agent, for nothing."""
    gpus = gpu_count(instance_type)
    return instance_count > 1 or gpus is None or gpus > 1
