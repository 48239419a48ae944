"""Where output goes: results on stdout (tables, or JSON for scripts), everything a person
watches (progress, plans, notes) on stderr, so `dogclf ... --json | jq` always parses.

On a terminal rich lays tables out to the window. Anywhere else (a pipe, a file, CI's log)
rich would use 80 columns and fold or cut names, ARNs and URIs mid-word, so `grep NAME log`
missed lines that name it: there every line is as long as what it holds, rules are plain
lines, and spinners and bars show only their final state (rich's own behaviour off a
terminal). Colour follows NO_COLOR, `--no-color` (no_color() below) and rich's detection.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

# The width off a terminal: wider than any line dogclf prints (an ARN is at most 2048
# characters), so nothing is folded or ellipsized; rich pads no table out to it.
LOG_WIDTH = 10_000


class DogclfConsole(Console):
    """rich's Console, itself on a terminal; elsewhere LOG_WIDTH wide, rules as plain lines.

    "A terminal" is the console's own stream (stdout and stderr can differ: `dogclf status >
    log` on a terminal), not rich's guess, which counts FORCE_COLOR as one.
    """

    def on_terminal(self) -> bool:
        isatty = getattr(self.file, "isatty", None)
        try:
            return bool(isatty is not None and isatty())
        except ValueError:  # the stream was closed (the end of a test run)
            return False

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size  # on a terminal: its window, or COLUMNS
        return size if self.on_terminal() else ConsoleDimensions(LOG_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self.width, self.height = new_size

    def rule(self, title: Any = "", **kwargs: Any) -> None:
        if self.on_terminal():
            super().rule(title, **kwargs)
        else:  # a rule drawn LOG_WIDTH wide would be 10,000 dashes in the log
            self.print(f"── {title}" if title else "──", highlight=False)


# Created once; each looks at its stream when it prints (CliRunner swaps them in tests).
out = DogclfConsole(soft_wrap=True)
err = DogclfConsole(stderr=True, soft_wrap=True)


def no_color() -> None:
    """`--no-color`: no colour from this process, and none from the processes it starts or
    from --help (NO_COLOR, which rich and most tools read)."""
    os.environ["NO_COLOR"] = "1"
    for console in (out, err):
        console.no_color = True


def print_json(data: Any) -> None:
    """Machine-readable result on stdout: one JSON document, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


# The messages quote names, paths and hints (`pip install 'dogclf[torch]'`): never markup.
def note(message: str) -> None:
    err.print(escape(message), highlight=False)


def success(message: str) -> None:
    err.print(f"[green]✓[/green] {escape(message)}", highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]Warning:[/yellow] {escape(message)}", highlight=False)
