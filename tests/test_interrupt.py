"""Ctrl-C on a waiting command (issue 12, item 7): the real `dogclf` console script, against
the emulator, gets SIGINT while it follows a job; it must name what keeps running and
billing, and the command that stops it, instead of a bare "Interrupted."."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from aws_support import Project, make_project

from dogclf.local.emulator import Emulator


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path, aws, monkeypatch)
    assert project.run("upload", "data").exit_code == 0
    return project


def until(found: Callable[[], str | None]) -> str:
    """Poll `found` until it answers (the CLI's progress, read back through boto3)."""
    while True:
        value = found()
        if value:
            return value
        time.sleep(0.05)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_while_waiting(
    project: Project, args: list[str], job: Callable[[], str | None]
) -> tuple[str, str]:
    """Start `dogclf ARGS`, wait until `job()` (boto3) names the job it started and the
    command reports it InProgress (it is then following it), SIGINT it; returns the job's
    name and the command's stderr."""
    proc = subprocess.Popen(
        ["dogclf", *args, "--poll-interval", "0.05"],
        cwd=project.root,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background by a non-interactive shell (`make test &` in a
        # script) inherits SIGINT ignored, and so would the CLI: Python then never raises
        # KeyboardInterrupt. A user's terminal gives the default; so does this.
        preexec_fn=_default_sigint,
    )
    assert proc.stderr is not None
    try:
        name = until(job)
        seen = []
        for line in proc.stderr:  # until the waiting command's first status note
            seen.append(line)
            if name in line and "InProgress" in line:
                break
        proc.send_signal(signal.SIGINT)
        stderr = "".join(seen) + proc.stderr.read()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    return name, stderr


def running_training_job() -> str | None:
    sm = boto3.client("sagemaker")
    jobs = sm.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"]
    return jobs[0]["TrainingJobName"] if jobs else None


def running_tuning_job() -> str | None:
    sm = boto3.client("sagemaker")
    found = sm.list_hyper_parameter_tuning_jobs(StatusEquals="InProgress")
    jobs = found["HyperParameterTuningJobSummaries"]
    return jobs[0]["HyperParameterTuningJobName"] if jobs else None


def test_ctrl_c_names_the_training_job_and_how_to_stop_it(project: Project) -> None:
    project.script("training-job", ["InProgress"])  # stays InProgress: the CLI waits on
    name, stderr = interrupt_while_waiting(project, ["train-sagemaker"], running_training_job)
    last = stderr.strip().splitlines()[-1]
    assert last == (
        f"Interrupted. Training job {name} keeps running (and billing): "
        f"stop it with `dogclf stop {name}`"
    )
    assert "Traceback" not in stderr
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert job["TrainingJobStatus"] == "InProgress"  # what the message warns about


def test_ctrl_c_names_the_tuning_job_and_how_to_stop_it(project: Project) -> None:
    project.script("tuning-job", ["InProgress"])
    name, stderr = interrupt_while_waiting(
        project, ["train-sagemaker", "--tune"], running_tuning_job
    )
    assert stderr.strip().splitlines()[-1] == (
        f"Interrupted. Tuning job {name} and its training jobs keep running (and billing): "
        f"stop them with `dogclf stop {name}`"
    )


def test_the_registry_names_only_what_ctrl_c_left_waiting() -> None:
    """A wait that ended (normally or by an error) is forgotten; one Ctrl-C ended is named."""
    from dogclf.commands.in_flight import interrupted_message, waiting_on

    with waiting_on("Endpoint e", "keeps deploying", "`dogclf teardown` removes it"):
        pass
    with pytest.raises(ValueError), waiting_on("Endpoint e", "keeps deploying", "x"):
        raise ValueError
    assert interrupted_message() == "Interrupted."
    with pytest.raises(KeyboardInterrupt), waiting_on("Endpoint e", "keeps deploying", "y"):
        raise KeyboardInterrupt
    assert interrupted_message() == "Interrupted. Endpoint e keeps deploying: y"
    assert interrupted_message() == "Interrupted."  # said once
