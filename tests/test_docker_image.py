"""The bring-your-own SageMaker serving image (Dockerfile + docker/entrypoint.sh).

The image itself cannot be built here (no Docker engine on this machine), so this checks
what can be checked without one: the Dockerfile's contract with SageMaker and with
pyproject.toml, the build context the .dockerignore leaves, and the entry point run
directly, as `docker run IMAGE serve` runs it, against a model in SM_MODEL_DIR.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import signal
import socket
import subprocess
import tomllib
from pathlib import Path

import pytest
from serving_support import Client, TrainedModel, clean_env

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def in_context(path: str) -> bool:
    """Whether .dockerignore leaves `path` in the build context (its rules, last match wins)."""
    keep = True
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(parts[-1], pattern) for p in prefixes
        ):
            keep = negate
    return keep


def test_dockerfile_follows_the_sagemaker_contract_and_pyproject() -> None:
    steps = instructions()
    by_kind: dict[str, list[str]] = {}
    for kind, args in steps:
        by_kind.setdefault(kind, []).append(args)
    assert steps[0][0] == "FROM"
    assert by_kind["EXPOSE"] == ["8080"]
    assert by_kind["ENTRYPOINT"] == ['["/usr/local/bin/dogclf-entrypoint"]']
    assert by_kind["CMD"] == ['["serve"]']  # `docker run IMAGE` alone serves too
    labels = " ".join(by_kind["LABEL"])
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in labels
    # torch is installed first from its own index: the same versions as the `torch` extra.
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["torch"]
    pins = {spec.split("==")[0]: spec for spec in extra if "==" in spec}
    torch_step = next(args for kind, args in steps if kind == "RUN" and "torch==" in args)
    assert pins["torch"] in torch_step and pins["torchvision"] in torch_step
    # Every COPY source exists and survives the .dockerignore; nothing else needed is left out.
    for kind, args in steps:
        if kind == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert in_context(source), f"{source} is excluded by .dockerignore"
    assert in_context("dogclf/serving/server.py")
    for private in (".venv/bin/python", "tests/conftest.py", "model.tar.gz", ".git/config"):
        assert not in_context(private), private
    assert not in_context("dogclf/serving/__pycache__/server.cpython-311.pyc")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_entrypoint_serve_runs_dogclf_serve_on_the_sagemaker_model_dir(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    """What the container runs: `entrypoint serve`, model in SM_MODEL_DIR (SageMaker's
    /opt/ml/model), port from SAGEMAKER_BIND_TO_PORT; it execs dogclf serve, so SIGTERM
    reaches the server and it exits 0. (`--host 127.0.0.1` is passed through only so the
    test does not listen on every interface; the image listens on 0.0.0.0.)"""
    model_dir = tmp_path / "opt" / "ml" / "model"
    shutil.copytree(trained_model.extracted, model_dir)
    port = free_port()
    env = clean_env(SM_MODEL_DIR=str(model_dir), SAGEMAKER_BIND_TO_PORT=str(port))
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "serve", "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready = proc.stdout.readline()
        assert ready.startswith(f"Serving {model_dir} ") and f":{port} " in ready, ready
        client = Client(f"http://127.0.0.1:{port}")
        assert client.request("GET", "/ping").status == 200
        image, breed = trained_model.test_images()[0]
        answer = client.invoke(image.read_bytes(), "image/jpeg")
        assert answer.status == 200 and answer.json()["predictions"][0]["label"] == breed
        proc.send_signal(signal.SIGTERM)  # what `docker stop` / SageMaker sends
        assert proc.wait() == 0
        assert "Stopped." in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The defaults the image relies on.
    script = ENTRYPOINT.read_text()
    assert '"${SM_MODEL_DIR:-/opt/ml/model}"' in script
    assert '--host "0.0.0.0"' in script or "--host 0.0.0.0" in script
    assert '"${SAGEMAKER_BIND_TO_PORT:-8080}"' in script


def test_entrypoint_refuses_train_and_reports_a_missing_model(tmp_path: Path) -> None:
    train = subprocess.run(
        ["sh", str(ENTRYPOINT), "train"], env=clean_env(), capture_output=True, text=True
    )
    assert train.returncode == 2 and "this image serves models" in train.stderr
    missing = tmp_path / "opt" / "ml" / "model"
    serve = subprocess.run(
        ["sh", str(ENTRYPOINT), "serve"],
        env=clean_env(SM_MODEL_DIR=str(missing)),
        capture_output=True,
        text=True,
    )
    assert serve.returncode == 1
    assert f"Error: model {missing} does not exist" in serve.stderr
    assert "Traceback" not in serve.stderr
    other = subprocess.run(
        ["sh", str(ENTRYPOINT), "echo", "hello"], env=clean_env(), capture_output=True, text=True
    )
    assert other.stdout == "hello\n"
