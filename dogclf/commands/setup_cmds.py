"""`dogclf init` and `dogclf config validate|show`."""

from __future__ import annotations

from pathlib import Path

import typer

from dogclf.commands.options import JSON_OPTION


def init(
    ctx: typer.Context,
    path: Path = typer.Argument(Path("dogclf.toml"), help="Where to write the config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented dogclf.toml with every key and its default."""
    from dogclf import render
    from dogclf.config_doc import render_init_toml
    from dogclf.errors import ConfigError

    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", "pass --force to overwrite it")
    try:
        path.write_text(render_init_toml(), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror}", "check the folder exists and is writable"
        ) from None
    render.success(f"wrote {path}; set aws.bucket and aws.role_arn, then `dogclf config validate`")


config_app = typer.Typer(help="Check and show the configuration in effect.", no_args_is_help=True)


@config_app.command("validate")
def validate(ctx: typer.Context) -> None:
    """Validate dogclf.toml plus DOGCLF_* overrides; exit 1 naming each bad field.

    Valid but unwise choices (a PyTorch image AWS no longer patches) are warnings on stderr.
    """
    import datetime as dt

    from dogclf import render
    from dogclf.aws.images import support_warnings
    from dogclf.commands.context import state

    cfg = state(ctx).config()
    for line in support_warnings(cfg, dt.datetime.now(dt.UTC).date()):
        render.warn(line)
    render.success(f"config is valid (project {cfg.project}, stage {cfg.stage})")


@config_app.command("show")
def show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print the resolved configuration and the AWS resource names derived from it."""
    from dogclf import render
    from dogclf.commands.context import state
    from dogclf.config import config_as_dict

    data = config_as_dict(state(ctx).config())
    if as_json:
        render.print_json(data)
        return
    from rich.table import Table

    table = Table(show_header=True, show_edge=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                table.add_row(f"{section}.{key}", "unset" if value is None else str(value))
        else:
            table.add_row(section, str(values))
    render.out.print(table)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(config_app, name="config")
