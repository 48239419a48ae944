"""The emulator refuses to start beside versions of moto or AWS's toolkits it was not written
against, in one line naming each; pyproject's emulator extra pins exactly the same versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from dogclf.errors import DogclfError
from dogclf.local import pins


def test_the_installed_versions_are_the_pinned_ones() -> None:
    pins.check_pins()


def test_a_wrong_version_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(pins.EMULATOR_PINS, "awslambdaric", "0.0.1")
    with pytest.raises(DogclfError) as caught:
        pins.check_pins()
    assert "awslambdaric" in caught.value.message and "needs 0.0.1" in caught.value.message
    assert "\n" not in caught.value.message
    assert "dogclf[emulator]" in (caught.value.hint or "")


def test_pyproject_pins_the_same_versions() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pinned = {}
    for requirement in project["project"]["optional-dependencies"]["emulator"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?==([0-9.]+)", requirement)
        if match:
            pinned[match.group(1)] = match.group(2)
    assert pinned == pins.EMULATOR_PINS
