"""Options shared by many commands, defined once so they read the same everywhere."""

from __future__ import annotations

import typer

JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
DRY_RUN_OPTION = typer.Option(
    False, "--dry-run", help="Print the plan (create/update/delete/no-op) and change nothing."
)
YES_OPTION = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
