"""A SageMaker training job run here, without Docker: the container contract emulated.

What the PyTorch training container gives an entry point, built in a work folder:
`opt/ml/input/data/<channel>` (the channels, linked), `opt/ml/input/config/*.json`, an
empty `opt/ml/model`, `opt/ml/output`, `opt/ml/checkpoints`, the `SM_*` environment, and
the hyperparameters as `--key value` arguments (and as JSON in SM_HPS). The entry point runs
as a subprocess exactly as the container's driver starts it; afterwards the model folder is
tarred into `model.tar.gz`, as SageMaker does before uploading it.

`instance_count > 1` starts one process per emulated host (algo-1, algo-2, ...) joined by
torch.distributed over loopback, the way SageMaker's torchrun launcher joins hosts. The
hosts share one /opt/ml tree here: only rank 0 writes the model and checkpoints.
The checkpoints folder is kept between runs of the same job name, like a checkpoint S3 URI
that SageMaker restores into a restarted (spot) job; model/ and output/ start empty.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dogclf.errors import DogclfError, ResourceFailedError, require_extra
from dogclf.model.hyperparameters import (
    ENTRY_MODULE,
    hyperparameters_argv,
    hyperparameters_from_config,
)

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

CHANNELS = ("train", "valid", "test")
TAIL_LINES = 15
# Variables that would leak the caller's own distributed or SageMaker set-up into the job.
_SCRUB_PREFIXES = ("SM_",)
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


class JobFailedError(ResourceFailedError):
    """The entry point failed or ran too long; `what` and `reason` as SageMaker would say."""

    def __init__(self, message: str, hint: str, *, what: str, reason: str) -> None:
        super().__init__(message, hint)
        self.what = what
        self.reason = reason


@dataclass
class LocalJobResult:
    job_dir: Path
    model_dir: Path
    model_tar: Path
    metrics: dict[str, Any]
    log_path: Path
    exit_code: int


@dataclass
class _Layout:
    job_dir: Path

    @property
    def opt_ml(self) -> Path:
        return self.job_dir / "opt" / "ml"

    @property
    def data(self) -> Path:
        return self.opt_ml / "input" / "data"

    @property
    def config(self) -> Path:
        return self.opt_ml / "input" / "config"

    @property
    def model(self) -> Path:
        return self.opt_ml / "model"

    @property
    def output(self) -> Path:
        return self.opt_ml / "output"

    @property
    def checkpoints(self) -> Path:
        return self.opt_ml / "checkpoints"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def prepare_job_dir(
    layout: _Layout,
    channels: dict[str, Path],
    hyperparameters: dict[str, str],
    hosts: list[str],
    instance_type: str,
) -> None:
    """The /opt/ml tree: fresh input/model/output, kept checkpoints."""
    for stale in (layout.opt_ml / "input", layout.model, layout.output):
        if stale.is_symlink() or stale.is_file():
            stale.unlink()
        elif stale.exists():
            shutil.rmtree(stale)
    for folder in (
        layout.data,
        layout.config,
        layout.model,
        layout.output / "data",
        layout.checkpoints,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    for name, source in channels.items():
        _link_channel(Path(source), layout.data / name)
    config = {
        "hyperparameters.json": {k: str(v) for k, v in hyperparameters.items()},
        "resourceconfig.json": {
            "current_host": hosts[0],
            "current_instance_type": instance_type,
            "current_group_name": "homogeneousCluster",
            "hosts": hosts,
            "instance_groups": [
                {
                    "instance_group_name": "homogeneousCluster",
                    "instance_type": instance_type,
                    "hosts": hosts,
                }
            ],
            "network_interface_name": "lo",
        },
        "inputdataconfig.json": {
            name: {
                "TrainingInputMode": "File",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            }
            for name in channels
        },
    }
    for name, content in config.items():
        (layout.config / name).write_text(json.dumps(content, indent=2), encoding="utf-8")


def container_env(
    layout: _Layout,
    channels: list[str],
    hyperparameters: dict[str, str],
    *,
    hosts: list[str],
    host_index: int,
    instance_type: str,
    master_port: int,
    base: dict[str, str] | None = None,
    code_dir: Path | None = None,
) -> dict[str, str]:
    """The environment the PyTorch training container sets for one host's process."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB
    }
    cpus = os.cpu_count() or 1
    host = _Host(hosts, host_index, instance_type, master_port, cpus)
    env.update(
        {k: str(v) for k, v in _sm_variables(layout, channels, hyperparameters, host).items()}
    )
    if len(hosts) > 1:
        # What torchrun gives each process on its host; "hosts" are processes on loopback.
        env.update(
            RANK=str(host_index),
            WORLD_SIZE=str(len(hosts)),
            LOCAL_RANK="0",
            LOCAL_WORLD_SIZE="1",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(master_port),
        )
        # N emulated hosts share this machine's cores (torchrun's own default is 1).
        env.setdefault("OMP_NUM_THREADS", str(max(1, cpus // len(hosts))))
    # The job runs the uploaded source dir when there is one (the container's /opt/ml/code),
    # else this checkout's dogclf.
    code_root = str(code_dir or Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (code_root, env.get("PYTHONPATH")) if p)
    if code_dir is not None:
        env["SM_MODULE_DIR"] = str(code_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True)
class _Host:
    """Where one process of the job runs, as the container's SM_* variables describe it."""

    hosts: list[str]
    index: int
    instance_type: str
    master_port: int
    cpus: int


def _sm_variables(
    layout: _Layout, channels: list[str], hyperparameters: dict[str, str], host: _Host
) -> dict[str, Any]:
    """The container's SM_* variables for one host's process."""
    opt_ml, hosts = layout.opt_ml, host.hosts
    sm: dict[str, Any] = {
        "SM_MODEL_DIR": layout.model,
        "SM_INPUT_DIR": opt_ml / "input",
        "SM_INPUT_DATA_DIR": layout.data,
        "SM_INPUT_CONFIG_DIR": layout.config,
        "SM_OUTPUT_DIR": layout.output,
        "SM_OUTPUT_DATA_DIR": layout.output / "data",
        "SM_OUTPUT_FAILURE": layout.output / "failure",
        "SM_CHECKPOINT_DIR": layout.checkpoints,
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(hyperparameters),
        "SM_HOSTS": json.dumps(hosts),
        "SM_CURRENT_HOST": hosts[host.index],
        "SM_HOST_COUNT": len(hosts),
        "SM_CURRENT_HOST_RANK": host.index,
        "SM_CURRENT_INSTANCE_TYPE": host.instance_type,
        "SM_MASTER_ADDR": hosts[0],
        "SM_MASTER_PORT": host.master_port,
        "SM_NUM_GPUS": _gpu_count(),
        "SM_NUM_CPUS": host.cpus,
        "SM_LOG_LEVEL": 20,
        "SM_NETWORK_INTERFACE_NAME": "lo",
        "SM_MODULE_NAME": ENTRY_MODULE,
        "SM_USER_ARGS": json.dumps(program_arguments(hyperparameters)),
    }
    for name in channels:
        sm[f"SM_CHANNEL_{name.upper()}"] = layout.data / name
    for key, value in hyperparameters.items():
        sm[f"SM_HP_{key.upper().replace('-', '_')}"] = value
    return sm


def _gpu_count() -> int:
    """GPUs without importing torch here (the control plane may not have it)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    return len([line for line in out.stdout.splitlines() if line.startswith("GPU ")])


def _pump(name: str, stream: IO[str], lines: queue.Queue[tuple[str, str | None]]) -> None:
    for line in iter(stream.readline, ""):
        lines.put((name, line.rstrip("\n")))
    lines.put((name, None))


@dataclass(frozen=True)
class JobSpec:
    """What one training job needs, whoever asked for it (the config, or a job request)."""

    hyperparameters: dict[str, str]
    instance_type: str
    instance_count: int = 1
    max_run: int = 86400
    job_name: str = "local"
    # The unpacked sagemaker_submit_directory and its sagemaker_program; None runs this
    # checkout's entry module instead (what `train-sagemaker --local` rehearses).
    code_dir: Path | None = None
    program: str | None = None


def run_local_job(
    cfg: DogclfConfig,
    channels: dict[str, Path],
    workdir: Path,
    hyperparameters: dict[str, str] | None = None,
    *,
    instance_count: int = 1,
    job_name: str = "local",
    on_log: Callable[[str], None] | None = None,
) -> LocalJobResult:
    """Run the training entry point under the emulated container contract; see the module doc.

    Raises ResourceFailedError (exit code + last log lines) when the entry point fails or
    runs past `training.max_run`, as the job would end in Failed/Stopped.
    """
    hps = dict(
        hyperparameters_from_config(cfg.training) if hyperparameters is None else hyperparameters
    )
    spec = JobSpec(
        hyperparameters=hps,
        instance_type=cfg.training.instance_type,
        instance_count=instance_count,
        max_run=cfg.training.max_run,
        job_name=job_name,
    )
    return run_job(spec, channels, workdir, on_log=on_log)


def program_arguments(hyperparameters: dict[str, str]) -> list[str]:
    """The container's driver passes every hyperparameter but its own `sagemaker_*` ones."""
    return hyperparameters_argv(
        {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    )


def run_job(
    spec: JobSpec,
    channels: dict[str, Path],
    workdir: Path,
    *,
    on_log: Callable[[str], None] | None = None,
) -> LocalJobResult:
    """Run one job's processes (one per emulated host) and pack its model; see run_local_job."""
    require_extra("torch", "torch", "train-sagemaker --local")
    from dogclf.model.artifact import pack_model_dir

    if spec.instance_count < 1:
        raise DogclfError(f"instance_count must be >= 1, got {spec.instance_count}")
    layout = _Layout(Path(workdir).resolve() / spec.job_name)
    hosts = [f"algo-{i + 1}" for i in range(spec.instance_count)]
    prepare_job_dir(layout, channels, spec.hyperparameters, hosts, spec.instance_type)
    log_path = layout.job_dir / "training.log"
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    procs: dict[str, subprocess.Popen[str]] = {}
    with open(log_path, "w", encoding="utf-8") as log:

        def log_line(text: str) -> None:
            log.write(text + "\n")
            log.flush()
            tail.append(text)
            if on_log is not None:
                on_log(text)

        try:
            lines = _start_hosts(spec, layout, list(channels), hosts, procs)
            timed_out = not _follow(procs, lines, time.monotonic() + spec.max_run, log_line)
        finally:
            _stop(procs)
    codes = {host: proc.wait() for host, proc in procs.items()}
    failed = {host: code for host, code in codes.items() if code != 0}
    if timed_out or failed:
        _raise_job_failed(spec, layout, failed, timed_out, list(tail), log_path)
    model_tar = pack_model_dir(layout.model, layout.job_dir / "output" / "model.tar.gz")
    metrics_file = layout.model / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    return LocalJobResult(
        job_dir=layout.job_dir,
        model_dir=layout.model,
        model_tar=model_tar,
        metrics=metrics,
        log_path=log_path,
        exit_code=0,
    )


Lines = queue.Queue[tuple[str, str | None]]  # (host, line); None: that host's output ended


def _start_hosts(
    spec: JobSpec,
    layout: _Layout,
    channels: list[str],
    hosts: list[str],
    procs: dict[str, subprocess.Popen[str]],
) -> Lines:
    """One entry point process per emulated host (into `procs` as each starts, so the
    caller stops them all on any failure); their output lines arrive on the queue."""
    hps = spec.hyperparameters
    if spec.code_dir is not None and spec.program:
        command = [sys.executable, str(spec.code_dir / spec.program), *program_arguments(hps)]
    else:
        command = [sys.executable, "-m", ENTRY_MODULE, *program_arguments(hps)]
    master_port = _free_port()
    lines: Lines = queue.Queue()
    for index, host in enumerate(hosts):
        env = container_env(
            layout,
            channels,
            hps,
            hosts=hosts,
            host_index=index,
            instance_type=spec.instance_type,
            master_port=master_port,
            code_dir=spec.code_dir,
        )
        proc = subprocess.Popen(
            command,
            cwd=spec.code_dir or layout.opt_ml,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        procs[host] = proc
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(host, proc.stdout, lines), daemon=True).start()
    return lines


def _follow(
    procs: dict[str, subprocess.Popen[str]],
    lines: Lines,
    deadline: float,
    log_line: Callable[[str], None],
) -> bool:
    """Hand on every host's lines until all outputs end; False when `deadline` passed first.
    One host failing stops the others (they would wait for it in a collective)."""
    open_streams = len(procs)
    while open_streams:
        try:
            host, line = lines.get(timeout=1.0)
        except queue.Empty:
            if time.monotonic() > deadline:
                return False
            if _any_failed(procs):
                _stop(procs)
            continue
        if line is None:
            open_streams -= 1
            continue
        log_line(line if len(procs) == 1 else f"[{host}] {line}")
    return True


def _raise_job_failed(
    spec: JobSpec,
    layout: _Layout,
    failed: dict[str, int],
    timed_out: bool,
    tail: list[str],
    log_path: Path,
) -> None:
    reason = _failure_reason(layout)
    what = (
        f"ran past its max run time ({spec.max_run} s) and was stopped"
        if timed_out
        else "failed with exit code "
        + ", ".join(
            f"{code} on {host}" if spec.instance_count > 1 else str(code)
            for host, code in failed.items()
        )
    )
    raise JobFailedError(
        f"local training job {spec.job_name} {what}"
        + (f": {reason}" if reason else "")
        + "\nlast log lines:\n"
        + "\n".join(tail),
        f"full log: {log_path}",
        what=what,
        reason=reason,
    )


def _any_failed(procs: dict[str, subprocess.Popen[str]]) -> bool:
    return any(proc.poll() not in (None, 0) for proc in procs.values())


def _stop(procs: dict[str, subprocess.Popen[str]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _failure_reason(layout: _Layout) -> str:
    """The entry point's own one-line reason (opt/ml/output/failure), as SageMaker shows it."""
    failure = layout.output / "failure"
    if failure.is_file():
        return failure.read_text(encoding="utf-8", errors="replace").strip()
    return ""
