"""`dogclf stop [JOB | latest]`: stop a SageMaker training or tuning job of this project."""

from __future__ import annotations

import typer

from dogclf.commands.options import DRY_RUN_OPTION, JSON_OPTION

JOB_HELP = "A training or tuning job's name, or 'latest': the project's newest job running."


def stop(
    ctx: typer.Context,
    job: str = typer.Argument("latest", metavar="JOB|latest", help=JOB_HELP),
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Stop a training or tuning job (SIGTERM: it saves and uploads its model so far)."""
    from dogclf import render
    from dogclf.aws.session import AwsContext
    from dogclf.aws.stop_jobs import plan_stop, status_now
    from dogclf.commands.context import state
    from dogclf.commands.plans import apply_plan, show_plan

    cfg = state(ctx).config()
    aws = AwsContext.from_config(cfg)
    with render.err.status(f"finding {job}", spinner="dots"):
        plan, target = plan_stop(aws, cfg, job)
    found = target.as_dict() if target else {"job": None, "kind": None, "status": None}
    if show_plan(plan, dry_run=dry_run, as_json=as_json, **found):
        return
    apply_plan(plan)
    result = {**found, "status": status_now(aws, target) if target else None}
    if as_json:
        render.print_json({"plan": plan.as_dict(), **result, "status_before": found["status"]})
        return
    if target is None:
        render.out.print(f"{cfg.names.base}: no job running", highlight=False)
        return
    render.out.print(f"{target.kind.resource} {target.name}: {result['status']}", highlight=False)
    if not plan.is_noop:
        render.note("its model so far lands in S3 as the job ends (`dogclf status` follows it)")


def register(app: typer.Typer) -> None:
    app.command("stop")(stop)
