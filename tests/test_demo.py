"""`dogclf demo` end to end, as a user runs it: the installed command in a subprocess, on the
embedded emulator, at a reduced size (3 breeds, 2 epochs) so CI stays quick."""

from __future__ import annotations

import importlib.metadata
import json
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from demo_support import SMALL, clean_env, demo

STEPS = [
    "dataset",
    "emulator",
    "upload",
    "train-sagemaker",
    "deploy",
    "serve",
    "scale",
    "lambda-deploy",
    "predict --via lambda",
    "predict --via endpoint",
    "status",
    "teardown",
]


@pytest.mark.slow
def test_demo_runs_every_step_and_leaves_nothing(
    small_demo: subprocess.CompletedProcess[str],
) -> None:
    done = small_demo
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert [s["step"] for s in summary["steps"]] == STEPS
    assert all(s["ok"] for s in summary["steps"]), summary["steps"]
    assert summary["ok"] and summary["classes"] == 3
    # Predictions came back through both paths, the same for every image, above chance.
    assert set(summary["test_accuracy"]) == {"lambda", "endpoint"}
    assert summary["paths_agree"] is True
    assert min(summary["test_accuracy"].values()) > summary["chance_accuracy"]
    assert "test_accuracy" in summary["training_metrics"]
    assert summary["left_after_teardown"] == []
    # The endpoint's traffic was answered by AWS's code: the default image's handler service.
    serve = next(s for s in summary["steps"] if s["step"] == "serve")
    version = importlib.metadata.version("sagemaker-pytorch-inference")
    assert serve["created"].startswith(
        f"AWS's handler service (sagemaker-pytorch-inference {version})"
    )
    # The summary names every step that ran AWS's own code.
    assert set(summary["aws_code"]) == {"train-sagemaker", "endpoint", "predict --via lambda"}
    assert "sagemaker-training 5.1.4" in summary["aws_code"]["train-sagemaker"]
    assert "awslambdaric" in summary["aws_code"]["predict --via lambda"]
    # Each step narrated on stderr; nothing of the emulator's access log.
    assert "[4/12] train-sagemaker" in done.stderr and "test_accuracy=" in done.stderr
    assert '"POST / HTTP/1.1"' not in done.stderr


@pytest.mark.slow
def test_table_summary_and_failed_step_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad-data"
    (bad / "train" / "001.Affenpinscher").mkdir(parents=True)  # no valid/ or test/
    done = demo("--data", str(bad), "--workdir", str(tmp_path / "work"), cwd=tmp_path)
    assert done.returncode == 1
    assert "demo step `upload` failed" in done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"upload\s.*FAILED", done.stdout)  # the table names it too
    assert "train-sagemaker" not in done.stdout  # later steps did not run


@pytest.mark.slow
def test_a_new_accounts_lambda_limit_shows_the_refusal_in_the_plan(tmp_path: Path) -> None:
    # Issue 12 item 1: on an account whose limit is 10 the demo's reserve (5) cannot fit;
    # lambda-deploy says so in its plan, before creating anything.
    work = str(tmp_path / "work")
    done = demo("--workdir", work, "--lambda-concurrency-limit", "10", *SMALL, cwd=tmp_path)
    assert done.returncode == 1
    assert "demo step `lambda-deploy` failed" in done.stderr
    assert "its Lambda concurrency limit is 10" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert re.search(r"lambda-deploy\s.*FAILED", done.stdout)


def _read_lines(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)


@pytest.mark.slow
def test_keep_leaves_a_serverless_emulator_that_real_commands_use(tmp_path: Path) -> None:
    # One demo shows both `--keep` and `--serverless` (issue 15): the pipeline deploys a
    # serverless endpoint, and what --keep leaves answers real commands run by hand.
    summary_file = tmp_path / "summary.json"
    with open(summary_file, "w") as summary_out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dogclf",
                "demo",
                "--keep",
                "--serverless",
                "--json",
                "--workdir",
                str(tmp_path / "w"),
                *SMALL,
            ],
            cwd=tmp_path,
            env=clean_env(),
            stdout=summary_out,
            stderr=subprocess.PIPE,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True).start()
    exports: dict[str, str] = {}
    try:
        while True:
            line = lines.get()
            assert line is not None, f"demo --keep exited with {proc.wait()}"
            match = re.match(r"export (\w+)=(.*)", line.strip())
            if match:
                exports[match.group(1)] = match.group(2)
            if "Ctrl-C here stops both" in line:
                break
        env = {**clean_env(), **exports}
        assert {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "DOGCLF_CONFIG"} <= set(
            env
        )

        def dogclf(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "dogclf", *args],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                check=False,
            )

        status = dogclf("status", "--json")
        assert status.returncode == 0, status.stderr
        kinds = {r["kind"] for r in json.loads(status.stdout)["resources"]}
        assert {"endpoint", "lambda function"} <= kinds
        assert "scalable target" not in kinds  # a serverless endpoint scales itself
        image = next((tmp_path / "w" / "data" / "test").rglob("*.jpg"))
        for via in ("endpoint", "lambda"):
            predicted = dogclf("predict", str(image), "--via", via, "--json")
            assert predicted.returncode == 0, predicted.stderr
            assert json.loads(predicted.stdout)[0]["predictions"][0]["label"]
        down = dogclf("teardown", "--yes", "--json")
        assert down.returncode == 0, down.stderr
        assert json.loads(dogclf("teardown", "--json").stdout)["deleted"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    summary = json.loads(summary_file.read_text())
    created = {s["step"]: s["created"] for s in summary["steps"]}
    assert all(s["ok"] for s in summary["steps"]), summary["steps"]
    assert "serverless 2048 MB, max concurrency 5, provisioned 1, InService" in created["deploy"]
    assert "it scales itself" in created["scale"]
    assert "real-time is cheaper above" in created["status"]
    assert summary["paths_agree"] is True
    assert set(summary["test_accuracy"]) == {"lambda", "endpoint"}


def test_a_workdir_with_other_files_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("mine")
    done = demo("--workdir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert "not empty and was not made by `dogclf demo`" in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "data" / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize(
    ("image", "toolkit"),
    [
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312", True),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference@sha256:abc", True),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/dogclf-serve:0.1.0", False),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312", False),
    ],
)
def test_the_endpoints_image_decides_what_answers(image: str, toolkit: bool) -> None:
    from dogclf.local.demo import runs_handler_service

    assert runs_handler_service(image) is toolkit
