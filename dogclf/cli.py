"""The `dogclf` command line: a Typer app whose commands live in dogclf/commands/.

Importing this module must stay cheap (no torch, boto3 or SageMaker SDK): each command
imports what it needs inside its function, so `dogclf --help` is fast.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from dogclf import __version__
from dogclf.commands.context import RAISE_ERRORS, State, debug_on
from dogclf.errors import DogclfError


class DogclfGroup(TyperGroup):
    """Turns DogclfError (and any other failure) into one red `Error:` line and exit 1.

    Living in the group rather than in main() means CliRunner tests see the same behaviour
    as the installed console script. Usage errors keep Typer's exit code 2. A caller that
    runs commands in-process and reports errors itself sets ctx.meta[RAISE_ERRORS].
    """

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        if ctx.meta.get(RAISE_ERRORS):
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except DogclfError as exc:
            _report(ctx, exc.message, exc.hint, exc)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            # The reader went away (`dogclf demo --help | head`): stop quietly, exit 1, as rich
            # does for what its consoles print; stdout pointed at nothing so the interpreter's
            # final flush cannot fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            from dogclf.commands.in_flight import interrupted_message

            # Waiting stopped, not what was waited on: name it and how to stop it.
            sys.stderr.write(interrupted_message() + "\n")
            raise typer.Exit(130) from None
        except Exception as exc:
            _report(
                ctx,
                f"unexpected {type(exc).__name__}: {exc}",
                "rerun with --debug and report it",
                exc,
            )
            raise typer.Exit(1) from None


def _report(ctx: typer.Context, message: str, hint: str | None, exc: BaseException) -> None:
    from dogclf import render

    if debug_on(ctx):
        traceback.print_exception(exc)
    from rich.markup import escape

    # The message quotes the user's values (a tag "[red]", a path): never read as markup.
    first, *rest = message.splitlines() or [""]
    render.err.print(f"[bold red]Error:[/bold red] {escape(first)}", highlight=False)
    for line in rest:
        render.err.print(f"  {line}", highlight=False, markup=False)
    if hint:
        render.err.print(f"[dim]Hint: {escape(hint)}[/dim]", highlight=False)


app = typer.Typer(
    cls=DogclfGroup,
    name="dogclf",
    help="Dog-breed classifier: from a folder of JPEGs to a production AWS service, "
    "rehearsed offline first.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dogclf {__version__}")
        raise typer.Exit()


def _no_color(value: bool) -> None:
    # Eager, so that `dogclf --no-color --help` is plain too.
    if value:
        from dogclf import render

        render.no_color()


@app.callback()
def _global(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        envvar="DOGCLF_CONFIG",
        help="Config file \\[default: ./dogclf.toml].",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    no_color: bool = typer.Option(
        False,
        "--no-color",
        callback=_no_color,
        is_eager=True,
        help="No colour in the output (so does NO_COLOR=1). Off a terminal there is none anyway.",
    ),
) -> None:
    ctx.obj = State(config, debug)


def _register() -> None:
    # Each module adds its commands to `app`; order here is the order in --help.
    from dogclf.commands import setup_cmds

    setup_cmds.register(app)
    for name in (
        "upload_cmd",
        "train_cmds",
        "stop_cmd",
        "train_ec2_cmd",
        "report_cmd",
        "deploy_cmds",
        "lambda_cmds",
        "predict_cmd",
        "serve_cmd",
        "status_cmds",
        "demo_cmd",
    ):
        module = importlib.import_module(f"dogclf.commands.{name}")
        module.register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
