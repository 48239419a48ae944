"""What every bench prints about the machine it ran on, so figures from two runs compare."""

from __future__ import annotations

import os


def load() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    return f"{os.getloadavg()[0]:.2f}"


def torch_line() -> str:
    """torch's version and threads, the CPUs, and the load at start."""
    import torch

    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {load()} at start"
    )
