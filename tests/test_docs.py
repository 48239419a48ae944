"""The README's config reference is generated from the pydantic models; drift fails here."""

from __future__ import annotations

from pathlib import Path

from dogclf.config_doc import update_readme

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_config_reference_matches_the_models() -> None:
    text = README.read_text(encoding="utf-8")
    assert update_readme(text) == text, "regenerate it: python -m dogclf.config_doc"


def test_readme_first_screen_gives_demo_and_test() -> None:
    first_screen = "\n".join(README.read_text(encoding="utf-8").splitlines()[:15])
    assert "make demo" in first_screen and "make test" in first_screen
