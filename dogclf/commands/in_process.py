"""Run a `dogclf` command line in this process, as the demo drives the pipeline: the same
group the console script uses, its stdout captured, and its DogclfError raised to the caller
(the group's one-line error printer stands aside: see RAISE_ERRORS) so the caller can name
what failed. Progress and plans still go to stderr."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence

import typer
from typer.core import TyperGroup

from dogclf.commands.context import RAISE_ERRORS
from dogclf.errors import DogclfError

CommandRunner = Callable[[Sequence[str]], str]


class CommandFailed(DogclfError):
    """A command ended with a non-zero exit without raising (e.g. predict's per-file errors)."""


def command_runner(group: TyperGroup) -> CommandRunner:
    """`run(argv)`: `dogclf ARGV` through `group`; returns what it printed on stdout."""

    def run(argv: Sequence[str]) -> str:
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            ctx = group.make_context("dogclf", list(argv))
            ctx.meta[RAISE_ERRORS] = True
            try:
                with ctx:
                    group.invoke(ctx)
            except typer.Exit as exc:
                if exc.exit_code:
                    name = ctx.invoked_subcommand or "command"
                    raise CommandFailed(f"`dogclf {name}` exited with {exc.exit_code}") from None
        return captured.getvalue()

    return run
