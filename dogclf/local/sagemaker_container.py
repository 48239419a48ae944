"""One host of a SageMaker training job, as the PyTorch training container is given it.

SageMaker mounts /opt/ml into each host's container with input/config/*.json written from the
CreateTrainingJob request and the channels under input/data/<channel>, then runs the image's
`train` (sagemaker-training's console script) with SAGEMAKER_TRAINING_MODULE pointing at the
framework's launcher. Here each host gets its own base folder instead of /opt/ml
(sagemaker_training/environment.py reads SAGEMAKER_BASE_DIR) and AWS's launcher runs as a
subprocess; everything past this layout (the SM_* environment, the sorted `--key value`
arguments, torchrun for sagemaker_torch_distributed_enabled, output/failure) is AWS's code.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogclf.errors import DogclfError

# What the SageMaker PyTorch training image sets (its Dockerfile's ENV).
TRAINING_MODULE = "sagemaker_pytorch_container.training:main"
GROUP = "homogeneousCluster"
# Variables that would leak the caller's own distributed or SageMaker set-up into the job.
_SCRUB_PREFIXES = ("SM_", "SAGEMAKER_", "PYTHONPATH")
_SCRUB = {
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "ROLE_RANK",
    "TORCHELASTIC_RUN_ID",
}


class HostLayout:
    """One host's base folder: what /opt/ml is inside its container."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.config = base / "input" / "config"
        self.data = base / "input" / "data"
        self.model = base / "model"
        self.output = base / "output"
        self.code = base / "code"
        self.checkpoints = base / "checkpoints"


def input_data_config(channels: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """inputdataconfig.json from the request's InputDataConfig, as SageMaker writes it."""
    config: dict[str, dict[str, str]] = {}
    for channel in channels:
        source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
        entry = {
            "TrainingInputMode": str(channel.get("InputMode", "File")),
            "S3DistributionType": str(source.get("S3DataDistributionType", "FullyReplicated")),
            "RecordWrapperType": str(channel.get("RecordWrapperType", "None")),
        }
        if channel.get("ContentType"):
            entry["ContentType"] = str(channel["ContentType"])
        config[str(channel["ChannelName"])] = entry
    return config


def resource_config(hosts: list[str], current: str, instance_type: str) -> dict[str, Any]:
    return {
        "current_host": current,
        "current_instance_type": instance_type,
        "current_group_name": GROUP,
        "hosts": hosts,
        "instance_groups": [
            {"instance_group_name": GROUP, "instance_type": instance_type, "hosts": hosts}
        ],
        # The job's private network (job_network.py) has only a loopback.
        "network_interface_name": "lo",
    }


@dataclass(frozen=True)
class HostSetup:
    """What every host of one job is given, from its CreateTrainingJob request."""

    hyperparameters: dict[str, str]  # verbatim: JSON-encoded values, as the request has them
    input_data_config: dict[str, dict[str, str]]
    channels: dict[str, Path]  # channel -> its data, already fetched (SageMaker's File mode)
    hosts: list[str]
    instance_type: str
    code_archive: Path | None  # unpacked into code/ beforehand; None: the toolkit fetches it


def prepare_host(layout: HostLayout, setup: HostSetup, host: str) -> None:
    """A fresh base folder for `host` (a new instance), laid out as SageMaker does."""
    if layout.base.exists():
        shutil.rmtree(layout.base)
    for folder in (layout.config, layout.data, layout.model, layout.output / "data"):
        folder.mkdir(parents=True)
    for name, source in setup.channels.items():
        _link_channel(Path(source), layout.data / name)
    files = {
        "hyperparameters.json": setup.hyperparameters,
        "resourceconfig.json": resource_config(setup.hosts, host, setup.instance_type),
        "inputdataconfig.json": setup.input_data_config,
    }
    for name, content in files.items():
        (layout.config / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    if setup.code_archive is not None:
        layout.code.mkdir()
        with tarfile.open(setup.code_archive) as tar:
            tar.extractall(layout.code, filter="data")  # refuses absolute paths and `..`


def _link_channel(source: Path, target: Path) -> None:
    source = source.resolve()
    if not source.is_dir():
        raise DogclfError(
            f"channel data {source} is not a folder",
            "pass the train/ valid/ test/ folders of a dataset in the dogImages layout",
        )
    try:
        target.symlink_to(source, target_is_directory=True)
    except OSError:  # no symlinks here (some Windows set-ups): copy instead
        shutil.copytree(source, target)


def launcher_command() -> list[str]:
    """The image's `train` console script (sagemaker_training.cli.train:main), run by this
    interpreter so that it is the one the toolkit starts the program with."""
    script = Path(sys.executable).with_name("train")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "from sagemaker_training.cli.train import main; main()"]


def launcher_env(
    layout: HostLayout, job_name: str, host_count: int, base: dict[str, str]
) -> dict[str, str]:
    """The container's environment for the launcher; it derives every SM_* variable itself."""
    env = {k: v for k, v in base.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB}
    bin_dir = str(Path(sys.executable).parent)  # torchrun, as on the image's PATH
    env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH")) if p)
    env["SAGEMAKER_BASE_DIR"] = str(layout.base)
    env["SAGEMAKER_TRAINING_MODULE"] = TRAINING_MODULE
    env["TRAINING_JOB_NAME"] = job_name  # set by the platform; the toolkit reads it
    env["PYTHONUNBUFFERED"] = "1"
    if host_count > 1:
        # Emulated hosts share this machine's cores (one process per host on CPU).
        cpus = os.cpu_count() or 1
        env.setdefault("OMP_NUM_THREADS", str(max(1, cpus // host_count)))
    return env


def failure_reason(layout: HostLayout) -> str:
    """output/failure: the program's own reason (dogclf's training core writes its one-line
    error first) or else the toolkit's (sagemaker_training/files.py write_failure_file skips
    an existing file). SageMaker's FailureReason holds its first 1024 characters."""
    failure = layout.output / "failure"
    if failure.is_file():
        return failure.read_text(encoding="utf-8", errors="replace").strip()[:1024]
    return ""


def merge_model_dirs(layouts: list[HostLayout], target: Path) -> Path:
    """Every host's model/ into one folder, later hosts overwriting the same names: what
    SageMaker uploads as model.tar.gz for several hosts (the SDK's local mode says so and
    does it: sagemaker/core/local/image.py, _SageMakerContainer.retrieve_artifacts)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for layout in layouts:
        shutil.copytree(layout.model, target, dirs_exist_ok=True)
    return target
