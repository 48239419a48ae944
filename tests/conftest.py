"""Shared fixtures: the moto server over HTTP (real boto3 clients, dummy credentials)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The serving tests' session fixtures (one model trained by the training core, one real
# `dogclf serve`), registered here so that every test module shares the same two.
from serving_support import handler_service, served, trained_model  # noqa: F401

from dogclf.local.emulator import Emulator, start_emulator

# `make test` runs .venv/bin/python without activating the venv: put its scripts (the
# installed `dogclf` console script) first on PATH so subprocess tests run that one.
_SCRIPTS = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _SCRIPTS:
    os.environ["PATH"] = _SCRIPTS + os.pathsep + os.environ.get("PATH", "")


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
        if var.startswith(("AWS_", "DOGCLF_")):
            monkeypatch.delenv(var)
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    emulator.reset()
    yield emulator
