"""`dogclf lambda-deploy`: the least-privilege Lambda in front of the endpoint."""

from __future__ import annotations

from typing import Any

import typer

from dogclf.commands.options import DRY_RUN_OPTION, JSON_OPTION


def lambda_deploy(
    ctx: typer.Context,
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Zip the handler, create its role and function, publish a version, point the alias,
    set reserved and provisioned concurrency (and a function URL if configured)."""
    from dogclf import render
    from dogclf.aws import lambda_fn
    from dogclf.aws.session import AwsContext
    from dogclf.commands.context import state
    from dogclf.commands.plans import apply_plan, show_plan

    cfg = state(ctx).config()
    aws = AwsContext.from_config(cfg)
    with render.err.status("reading what exists", spinner="dots"):
        plan = lambda_fn.plan_deploy(aws, cfg)
    warning = lambda_fn.missing_endpoint_warning(aws, cfg)
    if warning:
        render.warn(warning)
    if show_plan(plan, dry_run=dry_run, as_json=as_json):
        return
    from dogclf.commands.in_flight import waiting_on

    with waiting_on(
        f"Lambda {cfg.names.lambda_function}",
        "is left part-deployed (provisioned concurrency bills once allocated)",
        "rerun `dogclf lambda-deploy` to finish it, or `dogclf teardown` to remove it",
    ):
        apply_plan(plan)
    deployed = lambda_fn.describe(aws, cfg)
    if as_json:
        render.print_json({"dry_run": False, "plan": plan.as_dict(), "function": deployed})
        return
    if deployed is not None:
        _print_summary(deployed)


def _print_summary(deployed: dict[str, Any]) -> None:
    from rich.table import Table

    from dogclf import render

    alias = deployed["alias"] or {}
    provisioned = deployed["provisioned_concurrency"] or {}
    reserved = deployed["reserved_concurrency"]
    table = Table(show_header=False, show_edge=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("function", str(deployed["name"]))
    table.add_row("alias", f"{alias.get('arn')} -> version {alias.get('version')}")
    table.add_row("reserved", "account pool" if reserved is None else str(reserved))
    if provisioned:
        table.add_row("provisioned", f"{provisioned['requested']} ({provisioned['status']})")
    if deployed["url"]:
        table.add_row("url", str(deployed["url"]))
    table.add_row("invoke", "dogclf predict IMAGE --via lambda")
    render.out.print(table)


def register(app: typer.Typer) -> None:
    app.command("lambda-deploy")(lambda_deploy)
