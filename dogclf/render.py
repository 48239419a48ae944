"""Where output goes: results on stdout (tables, or JSON for scripts), everything a person
watches (progress, plans, notes) on stderr, so `dogclf ... --json | jq` always parses."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Created once; rich detects terminals itself and drops colour/animation in pipes and CI.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    """Machine-readable result on stdout: one JSON document, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def note(message: str) -> None:
    err.print(message, highlight=False)


def success(message: str) -> None:
    err.print(f"[green]✓[/green] {message}", highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]Warning:[/yellow] {message}", highlight=False)
