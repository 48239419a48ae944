"""The command context: global options every command reads (config path, --debug)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

# ctx.meta key: when set, the group lets a command's error reach its caller instead of
# printing it (commands/in_process.py, for the demo, which reports each step's failure).
RAISE_ERRORS = "dogclf.raise_errors"


class State:
    """Global options, shared with every command through the click context."""

    def __init__(self, config_path: Path | None, debug: bool) -> None:
        self.config_path = config_path
        self.debug = debug
        self._config: DogclfConfig | None = None

    def config(self) -> DogclfConfig:
        """The validated DogclfConfig (loaded once per run)."""
        if self._config is None:
            from dogclf.config import load_config

            self._config = load_config(self.config_path)
        return self._config


def state(ctx: typer.Context) -> State:
    obj = ctx.find_object(State)
    if obj is None:  # commands invoked without the callback (never via the CLI)
        obj = State(None, False)
        ctx.obj = obj
    return obj


def debug_on(ctx: typer.Context) -> bool:
    found = ctx.find_object(State)
    return bool(found and found.debug) or os.environ.get("DOGCLF_DEBUG", "") not in ("", "0")
