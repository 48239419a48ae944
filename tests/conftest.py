"""Shared fixtures: the moto server over HTTP (real boto3 clients, dummy credentials)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from demo_support import small_demo  # noqa: F401

# The serving tests' session fixtures (one model trained by the training core, one real
# `dogclf serve`), registered here so that every test module shares the same two.
from serving_support import handler_service, served, trained_model  # noqa: F401

from dogclf.local.emulator import Emulator, start_emulator
from dogclf.training.report import REPORT_ENV

# `make test` runs .venv/bin/python without activating the venv: put its scripts (the
# installed `dogclf` console script) first on PATH so subprocess tests run that one.
_SCRIPTS = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _SCRIPTS:
    os.environ["PATH"] = _SCRIPTS + os.pathsep + os.environ.get("PATH", "")


def pytest_configure(config: pytest.Config) -> None:
    """Every request dogclf sends in the suite is checked against its service model
    (dogclf/aws/request_check.py), one line per request in a file counted at the end."""
    from dogclf.aws.request_check import CHECK_ENV, LOG_ENV

    # Under pytest-xdist the workers inherit the controller's log (set here before they
    # start), so the summary the controller prints counts every worker's requests.
    if not (os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(LOG_ENV)):
        log = Path(tempfile.mkdtemp(prefix="dogclf-requests-")) / "checked.log"
        log.touch()
        os.environ[LOG_ENV] = str(log)
    os.environ[CHECK_ENV] = "1"
    # The training report's figures cost seconds a run: the suite's many tiny trainings
    # skip them; tests/test_report.py (and every run through a clean_env()) writes them.
    os.environ.setdefault(REPORT_ENV, "0")


# Fixtures that train a model or run the demo, and whether one instance serves the session
# or a module: under `--dist loadgroup` (make test) every test using one runs on the same
# pytest-xdist worker, so it is built once, not once per worker.
COSTLY_FIXTURES = {"small_demo": "session", "resnet": "module", "refused": "module"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name, scope in COSTLY_FIXTURES.items():
            if name in getattr(item, "fixturenames", ()):
                group = name if scope == "session" else f"{item.path.stem}-{name}"
                item.add_marker(pytest.mark.xdist_group(group))
                break


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from dogclf.aws.request_check import LOG_ENV

    log = Path(os.environ.get(LOG_ENV, "") or os.devnull)
    lines = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
    skipped = sum(int(line.rsplit(" ", 1)[-1]) for line in lines if line.strip())
    terminalreporter.write_line(
        f"request check: {len(lines)} requests checked against the service models "
        f"(pattern, length, value, enum); {skipped} values with an untranslatable pattern"
    )


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder as the working directory, no DOGCLF_* setting from outside."""
    monkeypatch.chdir(tmp_path)
    for var in list(os.environ):
        if var.startswith("DOGCLF_") and var != REPORT_ENV:
            monkeypatch.delenv(var)
    return tmp_path


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """One moto server for the session, on 127.0.0.1 and a random port."""
    emu = start_emulator()
    yield emu
    emu.stop()


@pytest.fixture
def aws(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A clean emulated account, with the environment pointing boto3 at it.

    Every AWS_* variable from the outer environment is removed first, so no real
    profile, region or endpoint can leak into a test.
    """
    for var in list(os.environ):
        if var.startswith(("AWS_", "DOGCLF_")) and var != REPORT_ENV:
            monkeypatch.delenv(var)
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    emulator.reset()
    yield emulator
