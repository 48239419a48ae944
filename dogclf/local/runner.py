"""A SageMaker training job run here, without Docker, through AWS's own training launcher.

Each emulated host (algo-1, algo-2, ...) gets a base folder laid out from the job's
CreateTrainingJob request (dogclf/local/sagemaker_container.py) and runs the PyTorch training
image's launcher, `train` with SAGEMAKER_TRAINING_MODULE=sagemaker_pytorch_container.training:main
(sagemaker-training + sagemaker-pytorch-training), as a subprocess inside the job's private
network (dogclf/local/job_network.py). The launcher sets the SM_* environment, starts the
program (torchrun across the hosts when sagemaker_torch_distributed_enabled) and writes
output/failure. Afterwards the hosts' model folders are merged and tarred into
`model.tar.gz`, as SageMaker does before uploading it.

What SageMaker's platform, not the container, does stays emulated here: fetching the
channels, the CheckpointConfig sync (a checkpoint store plays the checkpoint S3 URI: copied
into every host's checkpoints/ before the run and back after it; the emulator's jobs sync
it with the S3 URI itself (job_executor.py), so the trials of a tuning job share it as on
AWS; `--local` uses the job folder's checkpoints/, so a re-run of the same job name resumes
as a restarted spot job does), the max run time, the packing.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dogclf.errors import DogclfError, ResourceFailedError, require_extras
from dogclf.local.sagemaker_container import (
    HostLayout,
    HostSetup,
    failure_reason,
    launcher_command,
    launcher_env,
    merge_model_dirs,
    prepare_host,
)
from dogclf.model.hyperparameters import TORCH_DISTRIBUTED, decode_hyperparameter

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig
    from dogclf.local.job_network import HostNetwork, JobNetwork

TAIL_LINES = 15
# A job run here needs the training core's torch and AWS's launcher (module -> extra).
NEEDS = (("torch", "torch"), ("sagemaker_pytorch_container", "emulator"))
# StoppingCondition.MaxRuntimeInSeconds when a request has none: SageMaker's default, 1 day.
DEFAULT_MAX_RUN = 86400
# StopTrainingJob: SIGTERM, then SageMaker ends the job 120 s later (API_StopTrainingJob).
STOP_GRACE = 120.0


class JobFailedError(ResourceFailedError):
    """The launcher failed or ran too long; `failure_reason` as DescribeTrainingJob says it."""

    def __init__(self, message: str, hint: str, *, failure_reason: str) -> None:
        super().__init__(message, hint)
        self.failure_reason = failure_reason


@dataclass
class LocalJobResult:
    job_dir: Path
    model_dir: Path
    model_tar: Path
    metrics: dict[str, Any]
    log_path: Path
    exit_code: int
    stopped: bool = False  # by request_stop (StopTrainingJob): the model dir as it was left


@dataclass(frozen=True)
class JobSpec:
    """One training job as its CreateTrainingJob request describes it, parts fetched."""

    hyperparameters: dict[str, str]  # the request's, JSON-encoded values
    channels: dict[str, Path]
    input_data_config: dict[str, dict[str, str]]
    instance_type: str
    instance_count: int = 1
    max_run: int = DEFAULT_MAX_RUN
    job_name: str = "local"
    # sourcedir.tar.gz unpacked into each host's code/ before the launcher starts; None: the
    # launcher fetches sagemaker_submit_directory itself (a local tarball, `--local`).
    code_archive: Path | None = None
    # What plays CheckpointConfig.S3Uri (its objects, synced by the caller); None: the job
    # folder's checkpoints/.
    checkpoint_store: Path | None = None


@dataclass
class _Running:
    """One running job's host processes, for request_stop."""

    procs: dict[str, subprocess.Popen[str]]
    stop_deadline: float | None = None  # set by request_stop
    signalled: set[int] = field(default_factory=set)

    def deliver_stop(self) -> None:
        """SIGTERM, once, to each host's processes that have not had it (workers torchrun
        starts later get theirs on the next tick)."""
        if self.stop_deadline is None:
            return
        for proc in self.procs.values():
            for pid in _stop_targets(proc.pid):
                if pid not in self.signalled:
                    self.signalled.add(pid)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGTERM)

    def deadline(self, max_run_deadline: float) -> float:
        """When to kill the hosts: the max run time, or the end of a stop's grace period."""
        if self.stop_deadline is None:
            return max_run_deadline
        return min(max_run_deadline, self.stop_deadline)


_RUNNING: dict[str, _Running] = {}
_RUNNING_LOCK = threading.Lock()


def request_stop(job_name: str) -> bool:
    """StopTrainingJob for a job run here: SIGTERM to the program on every host (see
    _stop_targets), SIGKILL STOP_GRACE s later if it still runs. False when no job of that
    name runs in this process."""
    with _RUNNING_LOCK:
        running = _RUNNING.get(job_name)
        if running is None:
            return False
        if running.stop_deadline is None:
            running.stop_deadline = time.monotonic() + STOP_GRACE
        running.deliver_stop()
    return True


def run_local_job(
    cfg: DogclfConfig,
    channels: dict[str, Path],
    workdir: Path,
    hyperparameters: Mapping[str, Any] | None = None,
    *,
    instance_count: int = 1,
    job_name: str = "local",
    on_log: Callable[[str], None] | None = None,
) -> LocalJobResult:
    """`train-sagemaker --local`: the job `train-sagemaker` would submit for `cfg` (its
    hyperparameters, channels and instances; typed program `hyperparameters` replace the
    config's), with this checkout's source bundle as a local sagemaker_submit_directory.

    Raises ResourceFailedError (exit code + last log lines) when the program fails or runs
    past `training.max_run`, as the job would end in Failed/Stopped.
    """
    from dogclf.aws import training_jobs as tj
    from dogclf.aws.source_bundle import build_bundle
    from dogclf.local.sagemaker_container import input_data_config
    from dogclf.model.hyperparameters import ENTRY_MODULE, encode_hyperparameters

    training = cfg.training.model_copy(update={"instance_count": instance_count})
    job_cfg = cfg.model_copy(update={"training": training})
    job_dir = Path(workdir).resolve() / job_name
    job_dir.mkdir(parents=True, exist_ok=True)
    bundle = job_dir / "sourcedir.tar.gz"
    bundle.write_bytes(build_bundle(ENTRY_MODULE).data)
    region = os.environ.get("AWS_REGION") or cfg.aws.region or "us-east-1"
    program = (
        tj.program_hyperparameters(job_cfg)
        if hyperparameters is None
        else encode_hyperparameters(hyperparameters)
    )
    spec = JobSpec(
        hyperparameters={
            **program,
            **tj.framework_hyperparameters(job_cfg, str(bundle), region, job_name),
        },
        channels=channels,
        # File mode, FullyReplicated: what tj.input_channels asks for (it needs a bucket).
        input_data_config=input_data_config([{"ChannelName": name} for name in channels]),
        instance_type=training.instance_type,
        instance_count=instance_count,
        max_run=training.max_run,
        job_name=job_name,
    )
    return run_job(spec, workdir, on_log=on_log)


def run_job(
    spec: JobSpec, workdir: Path, *, on_log: Callable[[str], None] | None = None
) -> LocalJobResult:
    """Run one job's hosts through the launcher and pack its model; see run_local_job."""
    require_extras("train-sagemaker --local", *NEEDS)
    from dogclf.local.job_network import network_for
    from dogclf.model.artifact import pack_model_dir

    if spec.instance_count < 1:
        raise DogclfError(f"instance_count must be >= 1, got {spec.instance_count}")
    job_dir = Path(workdir).resolve() / spec.job_name
    store = spec.checkpoint_store or job_dir / "checkpoints"  # plays CheckpointConfig.S3Uri
    hosts, layouts = _lay_out_hosts(spec, job_dir, store)
    log_path = job_dir / "training.log"
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    procs: dict[str, subprocess.Popen[str]] = {}
    torchrun = decode_hyperparameter(spec.hyperparameters.get(TORCH_DISTRIBUTED, "false")) in (
        True,
        "true",
    )
    network = network_for(hosts, job_dir, torchrun=torchrun)
    with open(log_path, "w", encoding="utf-8") as log, network as net:

        def log_line(text: str) -> None:
            log.write(text + "\n")
            log.flush()
            tail.append(text)
            if on_log is not None:
                on_log(text)

        running = _Running(procs)
        with _RUNNING_LOCK:
            _RUNNING[spec.job_name] = running
        try:
            lines = _start_hosts(net, spec.job_name, layouts, procs)
            deadline = time.monotonic() + spec.max_run
            timed_out = not _follow(running, lines, deadline, log_line)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.pop(spec.job_name, None)
            _stop(procs)
    for layout in layouts:  # the platform uploads each host's checkpoints/
        _copy_tree(layout.checkpoints, store)
    codes = {host: proc.wait() for host, proc in procs.items()}
    failed = {host: code for host, code in codes.items() if code != 0}
    stopped = running.stop_deadline is not None
    # A stopped job is Stopped whatever its exit codes, and keeps what its model dir holds.
    if not stopped and (timed_out or failed):
        _raise_job_failed(spec, dict(zip(hosts, layouts, strict=True)), failed, timed_out, tail)
    model_dir = merge_model_dirs(layouts, job_dir / "model")
    model_tar = pack_model_dir(model_dir, job_dir / "output" / "model.tar.gz")
    metrics_file = model_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    code = max(codes.values(), key=abs, default=0)
    return LocalJobResult(job_dir, model_dir, model_tar, metrics, log_path, code, stopped)


def _lay_out_hosts(spec: JobSpec, job_dir: Path, store: Path) -> tuple[list[str], list[HostLayout]]:
    """algo-1..N, each base dir laid out from the request, with the job's checkpoints."""
    hosts = [f"algo-{i + 1}" for i in range(spec.instance_count)]
    layouts = [HostLayout(job_dir / host) for host in hosts]
    setup = HostSetup(
        hyperparameters=spec.hyperparameters,
        input_data_config=spec.input_data_config,
        channels=spec.channels,
        hosts=hosts,
        instance_type=spec.instance_type,
        code_archive=spec.code_archive,
    )
    for layout, host in zip(layouts, hosts, strict=True):
        prepare_host(layout, setup, host)
        _copy_tree(store, layout.checkpoints)
    return hosts, layouts


def _copy_tree(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)


Lines = queue.Queue[tuple[str, str | None]]  # (host, line); None: that host's output ended


def _pump(name: str, stream: IO[str], lines: Lines) -> None:
    for line in iter(stream.readline, ""):
        lines.put((name, line.rstrip("\n")))
    lines.put((name, None))


def _start_hosts(
    net: JobNetwork | HostNetwork,
    job_name: str,
    layouts: list[HostLayout],
    procs: dict[str, subprocess.Popen[str]],
) -> Lines:
    """One launcher per emulated host (into `procs` as each starts, so the caller stops them
    all on any failure); their output lines arrive on the queue."""
    lines: Lines = queue.Queue()
    for layout in layouts:
        host = layout.base.name
        proc = subprocess.Popen(
            net.enter(launcher_command()),
            cwd=layout.base,
            env={**launcher_env(layout, job_name, len(layouts), dict(os.environ)), **net.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group: stopped with torchrun and all
        )
        procs[host] = proc
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(host, proc.stdout, lines), daemon=True).start()
    return lines


def _follow(
    running: _Running, lines: Lines, deadline: float, log_line: Callable[[str], None]
) -> bool:
    """Hand on every host's lines until all outputs end; False when the deadline (max run
    time, or a stop's grace period) passed first. One host failing stops the others (they
    would wait for it in a collective)."""
    procs = running.procs
    open_streams, next_tick = len(procs), 0.0
    while open_streams:
        now = time.monotonic()
        if now >= next_tick:  # once a second, however chatty the hosts are
            next_tick = now + 1.0
            with _RUNNING_LOCK:
                running.deliver_stop()
            if now > running.deadline(deadline):
                return False
        try:
            host, line = lines.get(timeout=1.0)
        except queue.Empty:
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
    layouts: dict[str, HostLayout],
    failed: dict[str, int],
    timed_out: bool,
    tail: deque[str],
) -> None:
    # The first failed host's output/failure (algo-1's when it failed too).
    host = next(iter(failed), "algo-1")
    reason = failure_reason(layouts[host])
    if timed_out:
        what = f"ran past its max run time ({spec.max_run} s) and was stopped"
        sagemaker_reason = f"MaxRuntimeExceeded: {what}"
    else:
        what = "failed with exit code " + ", ".join(
            f"{code} on {name}" if spec.instance_count > 1 else str(code)
            for name, code in failed.items()
        )
        # SageMaker words an algorithm's failure as "AlgorithmError: <output/failure>, exit code: N".
        detail = reason or f"the training launcher {what}"
        sagemaker_reason = f"AlgorithmError: {detail}, exit code: {failed[host]}"
    job_dir = next(iter(layouts.values())).base.parent
    raise JobFailedError(
        f"local training job {spec.job_name} {what}"
        + (f": {reason}" if reason else "")
        + "\nlast log lines:\n"
        + "\n".join(tail),
        f"full log: {job_dir / 'training.log'}",
        failure_reason=sagemaker_reason[:1024],
    )


def _any_failed(procs: dict[str, subprocess.Popen[str]]) -> bool:
    return any(proc.poll() not in (None, 0) for proc in procs.values())


def _stop(procs: dict[str, subprocess.Popen[str]]) -> None:
    """Each host's whole process group (launcher, torchrun, the program)."""
    for proc in procs.values():
        _signal_group(proc, signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(proc.pid, sig)


def _stop_targets(leader: int) -> list[int]:
    """Whom StopTrainingJob's SIGTERM reaches on a host: the launcher's own children, the
    program (or torchrun's agent, which hands it on to its workers), as SageMaker's stop
    reaches them, while the launcher lives on to pass on the program's last lines and exit
    code. Not the rest of the group: the program's DataLoader workers die on SIGTERM and
    take the run down before it can save, and nothing on AWS signals them. Before the
    launcher has started the program, the launcher itself: the job ends unstarted."""
    children = _children(leader)
    return children or ([leader] if leader in _group_members(leader) else [])


def _children(pid: int) -> list[int]:
    """The direct children of `pid`, started from any of its threads (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # the thread or the process is gone
            children += [int(child) for child in (task / "children").read_text().split()]
    return children


def _group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry.name)) == pgid:
                members.append(int(entry.name))
    return members
