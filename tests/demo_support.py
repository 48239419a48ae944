"""Shared by the demo tests: `dogclf demo` as a user runs it (the installed command in a
subprocess, at a reduced size so CI stays quick), and one such clean run for the session,
registered in conftest.py, which both the demo test and the fault-injection test read."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SMALL = ("--classes", "3", "--images-per-class", "9", "--epochs", "2")


def clean_env() -> dict[str, str]:
    """The caller's AWS and dogclf settings removed: the demo must need none of them. (The
    suite's count of checked requests stays: the demo's requests are checked and counted.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOGCLF_"))}
    env.update({k: v for k, v in os.environ.items() if k == "DOGCLF_CHECK_REQUESTS_LOG"})
    env["COLUMNS"] = "80"  # rich's width for a pipe; names stay whole (test_piped_output.py)
    return env


def demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dogclf", "demo", *args],
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,  # no terminal at all, as in CI (tests/test_piped_output.py)
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def small_demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[subprocess.CompletedProcess[str]]:
    """One clean `dogclf demo --json` at the SMALL size, run once for the session."""
    root = tmp_path_factory.mktemp("small-demo")
    yield demo("--json", "--workdir", str(root / "work"), *SMALL, cwd=root)
