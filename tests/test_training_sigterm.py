"""SIGTERM (issue 12, item 6): SageMaker's StopTrainingJob, tuning early stopping and Hyperband
stop a job with SIGTERM, then SIGKILL 120 s later. The real training core, as a subprocess
on generated data, gets a real SIGTERM after its first epoch: it writes the best model so far
(the same artifact, metrics.json saying it was stopped), keeps its checkpoint, exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_training_core import clean_env, core_args

from dogclf.model.artifact import check_model_dir
from dogclf.model.network import build_model
from dogclf.training import checkpoint
from dogclf.training.synthetic import make_dataset

pytestmark = pytest.mark.slow

EPOCHS = 50  # far more than runs before the signal: the stop, not the end, ends the run
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dogimages") / "data"
    return make_dataset(root, classes=4, per_class=20, size_range=(48, 80), seed=5)


def run_until(
    command: list[str], marker: str, send: Callable[[subprocess.Popen[str]], None]
) -> tuple[int, str]:
    """Start `command`, call `send` once `marker` appears in its output, wait for the end."""
    env = clean_env() | {"TRAINING_JOB_NAME": "job-7"}  # as SageMaker sets it
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:  # reads as the run prints: no sleeping, no guessing
        seen.append(line)
        if marker in line:
            send(proc)
            break
    seen.append(proc.stdout.read())
    return proc.wait(), "".join(seen)


def assert_stopped_artifact(out: Path, output: str) -> dict[str, object]:
    model_dir = check_model_dir(out / "model")  # model.pt, labels.json, metrics.json, code/
    metrics = json.loads((model_dir / "metrics.json").read_text())
    done = metrics["epochs_run"]
    assert metrics["stopped_by_signal"] == "SIGTERM" and done >= 1
    assert metrics["stopped_at_epoch"] == done + 1  # the epoch in progress was dropped
    assert 1 <= metrics["best_epoch"] <= done and len(metrics["history"]) == done
    assert metrics["test"]["accuracy"] >= 0.0  # the best weights were still tested
    assert f"stopped by SIGTERM in epoch {done + 1}/{EPOCHS}" in output
    saved = torch.load(model_dir / "model.pt", weights_only=True)
    build_model("tiny_cnn", 4).load_state_dict(saved["state_dict"])  # loadable
    # The checkpoint of the last completed epoch, in this job's folder, for a restart.
    state = torch.load(out / "checkpoints" / "job-7" / checkpoint.CHECKPOINT_FILE)
    assert state["epoch"] == done - 1 and not state["stopped_early"]
    return metrics


def test_sigterm_after_an_epoch_writes_the_best_model_and_exits_0(
    data: Path, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "dogclf.training.train"]
    command += core_args(data, tmp_path, epochs=EPOCHS)
    code, output = run_until(
        command, f"epoch 1/{EPOCHS} done", lambda proc: proc.send_signal(signal.SIGTERM)
    )
    assert code == 0, output[-3000:]
    metrics = assert_stopped_artifact(tmp_path, output)
    assert "test_accuracy=" in output  # the metric lines SageMaker parses, as at the end
    assert metrics["world_size"] == 1


def rank_zero(agent: subprocess.Popen[str]) -> int:
    """torchrun's worker with RANK=0: a child of the agent (Linux /proc)."""
    children = Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split()
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"RANK=0" in environ:
            return int(pid)
    raise AssertionError(f"no RANK=0 among torchrun's children {children}")


def test_sigterm_to_one_rank_of_two_stops_both_without_a_deadlock(
    data: Path, tmp_path: Path
) -> None:
    # Only rank 0 is signalled: rank 1 learns it through the ranks' agreement between
    # batches; without it rank 1 would wait in DDP's all-reduce for a rank that left.
    command = [*TORCHRUN, "2", "-m", "dogclf.training.train"]
    command += core_args(data, tmp_path, epochs=EPOCHS)
    code, output = run_until(
        command,
        f"epoch 1/{EPOCHS} done",
        lambda agent: os.kill(rank_zero(agent), signal.SIGTERM),
    )
    assert code == 0, output[-3000:]  # every worker exited 0, so torchrun did
    metrics = assert_stopped_artifact(tmp_path, output)
    assert metrics["world_size"] == 2
    assert output.count("stopped by SIGTERM") == 1  # rank 0 alone talks and writes


def test_a_killed_run_still_leaves_the_best_model_so_far(data: Path, tmp_path: Path) -> None:
    # The stock PyTorch image's launcher does not pass SIGTERM on to the program, so on AWS a
    # stop ends in SIGKILL. After each better epoch the model dir already holds that epoch's
    # weights, which SageMaker uploads for a stopped job.
    command = [sys.executable, "-m", "dogclf.training.train"]
    command += core_args(data, tmp_path, epochs=EPOCHS)
    code, output = run_until(
        command, "(best so far)", lambda proc: proc.send_signal(signal.SIGKILL)
    )
    assert code == -signal.SIGKILL, output[-3000:]
    model_dir = check_model_dir(tmp_path / "model")
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["complete"] is False and metrics["test"] is None
    assert metrics["best_epoch"] == 1 and metrics["epochs_run"] == 1
    saved = torch.load(model_dir / "model.pt", weights_only=True)
    build_model("tiny_cnn", 4).load_state_dict(saved["state_dict"])
    assert not list(model_dir.glob(".*.tmp"))  # no half-written file left beside them
