"""Issue 16: the deploy-only install, `pip install dogclf` (a CI runner or a laptop that never
trains), runs every command that deploys, and the others say in one line which extra they need.

The CLI runs in a child process that cannot import anything the base install would not
bring: every installed distribution outside the closure of pyproject.toml's base
dependencies is hidden from the import system (torch, torchvision, moto, AWS's toolkits, and
of the SageMaker SDK all but `sagemaker.core`), as if never installed: imports fail with
ModuleNotFoundError and importlib.util.find_spec returns None (importlib.metadata may still
list some: a fresh editable install's finders answer it too; dogclf asks find_spec). It
talks to the moto server of this test process over HTTP (fixture `aws`), and its
sagemaker-runtime traffic goes to the suite's real `dogclf serve` (fixture `served`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import boto3
import pytest
from aws_support import BUCKET, CONFIG
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from serving_support import Served

from dogclf.local.emulator import Emulator
from dogclf.local.moto_ext import enable_lambda_runtime

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
HIDDEN_ENV = "DOGCLF_TEST_HIDDEN"  # JSON: {"modules": [...], "distributions": [...]}
# A venv's own tools: there in any environment, whatever dogclf depends on.
VENV_OWN = {"pip", "setuptools", "wheel"}

# Run before dogclf in the child: the path finder, blind to what the base install lacks.
HIDE_AND_RUN = r"""
import importlib.machinery, json, os, runpy, sys

_hidden = json.loads(os.environ.pop("DOGCLF_TEST_HIDDEN"))
MODULES, DISTS = tuple(_hidden["modules"]), set(_hidden["distributions"])


def hidden(name):
    return any(name == m or name.startswith(m + ".") for m in MODULES)


class BasePathFinder(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        return None if hidden(fullname) else super().find_spec(fullname, path, target)

    @classmethod
    def find_distributions(cls, *args, **kwargs):
        for dist in super().find_distributions(*args, **kwargs):
            name = (dist.metadata["Name"] or "").lower().replace("_", "-").replace(".", "-")
            if name not in DISTS:
                yield dist


for _name in [n for n in sys.modules if hidden(n)]:  # what a .pth file imported
    del sys.modules[_name]
sys.meta_path[:] = [
    BasePathFinder if f is importlib.machinery.PathFinder else f for f in sys.meta_path
]
sys.path_importer_cache.clear()
sys.argv = ["dogclf", *sys.argv[1:]]
runpy.run_module("dogclf", run_name="__main__", alter_sys=True)
"""


def _requirements(texts: Iterable[str], extras: Iterable[str] = ()) -> Iterable[Requirement]:
    for text in texts:
        req = Requirement(text)
        if req.marker is None or any(
            req.marker.evaluate({"extra": extra}) for extra in ("", *extras)
        ):
            yield req


def base_closure() -> set[str]:
    """The distributions `pip install dogclf` brings: pyproject's base dependencies and
    theirs, as installed here (their extras' dependencies when asked for)."""
    todo = list(_requirements(tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]))
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        todo += _requirements(metadata.requires(req.name) or [], req.extras)
    return seen


def _paths(dist: metadata.Distribution) -> set[tuple[str, str]]:
    """The importable names a distribution installs, as (top, second) path parts."""
    found = set()
    for path in dist.files or []:
        parts = path.parts
        if parts[0] in ("..", "__pycache__") or parts[0].endswith((".dist-info", ".data")):
            continue
        if len(parts) == 1 and not parts[0].endswith((".py", ".so", ".pyd")):
            continue
        second = parts[1].split(".", 1)[0] if len(parts) > 1 else ""
        found.add(
            (parts[0].split(".", 1)[0], "" if second in ("__init__", "__pycache__") else second)
        )
    return found


def _tops(dist: metadata.Distribution) -> set[str]:
    listed = dist.read_text("top_level.txt")  # quicker than RECORD, where there
    if listed is not None:
        return {line.strip() for line in listed.splitlines() if line.strip()}
    return {top for top, _ in _paths(dist)}


@lru_cache(maxsize=1)
def hidden_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(modules, distributions) installed here that the base install would not bring. A
    namespace package that a kept distribution shares (`sagemaker`: sagemaker-core has
    sagemaker/core) is hidden by its subpackages (sagemaker.train, ...) only."""
    keep = base_closure() | VENV_OWN | {"dogclf"}
    dists = {canonicalize_name(d.metadata["Name"] or ""): d for d in metadata.distributions()}
    kept_tops = {top for name in keep if name in dists for top in _tops(dists[name])}
    modules: set[str] = set()
    for name, dist in dists.items():
        if name in keep:
            continue
        tops = _tops(dist)
        modules |= tops - kept_tops
        if tops & kept_tops:  # a shared namespace: hide this distribution's part of it
            modules |= {f"{t}.{s}" for t, s in _paths(dist) if t in kept_tops and s}
    return tuple(sorted(modules)), tuple(sorted(set(dists) - keep))


def base_only_env(**extra: str) -> dict[str, str]:
    modules, dists = hidden_names()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "DOGCLF_CONFIG")}
    env[HIDDEN_ENV] = json.dumps({"modules": modules, "distributions": dists})
    return {**env, **extra}


def base_only(
    *commands: tuple[str, ...], cwd: Path, env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """Each `dogclf ARGS` of `commands` as the deploy-only install runs it, stdout and stderr
    pipes; side by side (they are independent), so the batch takes the time of a few."""
    procs = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-c", HIDE_AND_RUN, *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for args in commands
    ]
    done = []
    for args, proc in procs:
        out, err = proc.communicate()
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def test_the_base_install_lacks_torch_moto_and_the_sdk_but_its_core(tmp_path: Path) -> None:
    modules, dists = hidden_names()
    assert {"torch", "torchvision", "moto", "PIL", "uvicorn", "awslambdaric"} <= set(modules)
    assert "sagemaker-core" not in dists  # the SDK's core module is the base's
    if "sagemaker" in {
        canonicalize_name(d.metadata["Name"] or "") for d in metadata.distributions()
    }:
        # The whole SDK is installed here (a venv from before issue 16): all but its core hidden.
        assert {"sagemaker.train", "sagemaker.serve", "sagemaker.mlops"} <= set(modules)
        assert "sagemaker" in dists
    probe = (
        "import importlib.util\n"
        "for name in ('torch', 'torchvision', 'moto', 'sagemaker.train', 'sagemaker.serve'):\n"
        "    assert importlib.util.find_spec(name) is None, name\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ModuleNotFoundError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError(name)\n"
        "from sagemaker.core import image_uris\n"
        "assert image_uris.retrieve\n"
        "print('ok')\n"
    )
    script = HIDE_AND_RUN.replace(
        'runpy.run_module("dogclf", run_name="__main__", alter_sys=True)', probe
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=base_only_env(), capture_output=True, text=True
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def one_error(done: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """The `Error:` and `Hint:` lines of a failed command, which printed nothing else."""
    assert done.returncode == 1, (done.args, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: "), lines
    assert lines[1].startswith("Hint: "), lines
    return lines[0], lines[1]


def succeeded(*done: subprocess.CompletedProcess[str]) -> list[str]:
    """Each command's stdout; each must have exited 0 with no error or traceback."""
    for d in done:
        assert d.returncode == 0, (d.args, d.stderr[-3000:])
        assert "Traceback" not in d.stderr and "Error:" not in d.stderr, (d.args, d.stderr)
    return [d.stdout for d in done]


@pytest.mark.slow
def test_deploy_only_commands_work_and_the_rest_name_their_extra(
    aws: Emulator, served: Served, tmp_path: Path
) -> None:
    from dogclf.training.synthetic import make_dataset

    (tmp_path / "dogclf.toml").write_text(CONFIG)
    make_dataset(tmp_path / "data", classes=3, per_class=3, size_range=(24, 32))
    env = base_only_env(AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=served.url)
    enable_lambda_runtime(aws.url, {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": served.url})
    image, breed = served.model.test_images()[0]
    tar = str(served.model.tar)
    # What trains or emulates: one line naming the extra that brings what is missing.
    needs = {
        ("train-ec2",): "torch",
        ("train-sagemaker", "--local"): "torch,emulator",
        ("serve", tar): "torch",
        ("predict", str(image), "--via", "local", "--model", tar): "torch",
        ("demo",): "torch,emulator",
    }
    first = ("--help",), ("config", "validate"), ("status",), ("upload", "data", "--dry-run")
    *ran, help_, valid, status, checked = base_only(*needs, *first, cwd=tmp_path, env=env)
    for (args, extra), done in zip(needs.items(), ran, strict=True):
        error, hint = one_error(done)
        assert error.startswith(f"Error: `dogclf {args[0]}") and "needs torch" in error, error
        assert hint == f"Hint: pip install 'dogclf[{extra}]'  (or `make install` in a checkout)"
    succeeded(help_, valid, status, checked)
    assert "lambda-deploy" in help_.stdout and "config is valid" in valid.stderr
    assert re.search(rf"s3 bucket\s.*{BUCKET}\s.*missing", status.stdout)
    # Without Pillow, upload checks file signatures and says which extra decodes images.
    assert "Pillow is not installed" in checked.stderr
    assert "pip install 'dogclf[torch]'" in checked.stderr

    model = f"s3://{BUCKET}/dogclf/dev/models/manual/model.tar.gz"
    deploy = ("deploy", "--model", model, "--poll-interval", "0")
    for args in (("upload", "data"), deploy, ("lambda-deploy",)):
        succeeded(*base_only(args, cwd=tmp_path, env=env))
        if args[0] == "upload":
            boto3.client("s3").upload_file(tar, BUCKET, model.split("/", 3)[3])
    dry_runs = [
        ("train-sagemaker", "--dry-run", "--json"),
        (*deploy, "--dry-run"),
        *[(command, "--dry-run") for command in ("scale", "lambda-deploy", "stop", "teardown")],
    ]
    predicts = [("predict", str(image), "--via", via, "--json") for via in ("endpoint", "lambda")]
    trained, *_, via_endpoint, via_lambda, listed = succeeded(
        *base_only(*dry_runs, *predicts, ("status", "--json"), cwd=tmp_path, env=env)
    )
    # The training image comes from sagemaker.core's tables: the SDK's core module suffices.
    assert "pytorch:2.13-cpu-amzn2023-sagemaker" in trained
    for answer in (via_endpoint, via_lambda):
        (row,) = json.loads(answer)
        assert row["predictions"][0]["label"] == breed, row
    found = json.loads(listed)["resources"]
    kinds = {r["kind"] for r in found if r["state"] not in ("missing", "not configured")}
    assert {"endpoint", "lambda function"} <= kinds
