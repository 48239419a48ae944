"""`dogclf status` (what exists, what it costs per hour) and `dogclf teardown`."""

from __future__ import annotations

import sys
from typing import Any

import typer

from dogclf.commands.options import DRY_RUN_OPTION, JSON_OPTION, YES_OPTION


def status(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Every resource of this project/stage, its state, and the running cost per hour."""
    from dogclf import render
    from dogclf.aws.inventory import describe_all
    from dogclf.aws.pricing import load_prices
    from dogclf.aws.session import AwsContext
    from dogclf.commands.context import state

    cfg = state(ctx).config()
    aws = AwsContext.from_config(cfg)
    with render.err.status("reading the project's resources", spinner="dots"):
        found = describe_all(aws, cfg)
    known = sum(r.hourly_cost for r in found if r.running and r.hourly_cost is not None)
    unknown = [f"{r.kind} {r.name}" for r in found if r.running and r.hourly_cost is None]
    prices = load_prices().provenance()
    if as_json:
        render.print_json(
            {
                "project": cfg.project,
                "stage": cfg.stage,
                "region": aws.region,
                "resources": [r.as_dict() for r in found],
                "hourly_cost": {"known_usd": round(known, 4), "unknown": unknown},
                "prices": prices,
            }
        )
        return
    from rich.table import Table

    table = Table(
        title=f"{cfg.project}/{cfg.stage} in {aws.region}", title_justify="left", show_edge=False
    )
    for column in ("kind", "name", "state", "details", "$/hour"):
        table.add_column(column, overflow="fold")
    for r in found:
        table.add_row(r.kind, r.name, r.state, r.details, _cost(r))
    if found:
        render.out.print(table)
    else:
        render.out.print(f"{cfg.project}/{cfg.stage}: nothing exists on AWS", highlight=False)
    line = f"running cost: ${known:.3f}/hour"
    if unknown:
        line += f" + unknown for {len(unknown)} ({', '.join(unknown)}: no price in the table)"
    render.out.print(line, highlight=False)
    for r in found:
        if r.pricing is not None:
            render.out.print(serverless_line(r.name, r.pricing), highlight=False)
    verified = "" if prices["verified"] else ", not re-checked"
    render.note(f"prices: {prices['as_of']}{verified}; {prices['source']}")


def serverless_line(name: str, pricing: dict[str, Any]) -> str:
    """What a serverless endpoint costs per request, and the request rate above which one
    real-time instance of endpoint.instance_type is cheaper (the crossover)."""
    rate, other = pricing["usd_per_inference_second"], pricing["compared_with"]
    seconds = pricing["crossover_inference_seconds_per_hour"]
    when = pricing["prices"]
    dated = f"serverless prices of {when['as_of']}" + (
        "" if when["verified"] else ", not re-checked"
    )
    if rate is None or seconds is None:
        return (
            f"serverless endpoint {name}: no price for this region or type in the table ({dated})"
        )
    line = (
        f"serverless endpoint {name}: ${rate:.6f} per second of inference at "
        f"{pricing['memory_mb']} MB (${rate * 3600:.3f} per busy hour)"
    )
    if pricing["data_usd_per_gb"] is not None:
        line += f" + ${pricing['data_usd_per_gb']:.3f}/GB in and out"
    if pricing["provisioned_usd_per_hour"]:
        line += f" + ${pricing['provisioned_usd_per_hour']:.3f}/hour provisioned concurrency"
    per_hour = pricing["crossover_requests_per_hour"]
    return (
        f"{line}; one real-time {other['instance_type']} (${other['usd_per_hour']:.3f}/hour) "
        f"is cheaper above {seconds:,.0f} s of inference an hour: {per_hour['1000 ms']:,.0f} "
        f"requests/hour at 1 s each, {per_hour['200 ms']:,.0f} at 200 ms ({dated})"
    )


def _cost(r: Any) -> str:
    if not r.running:
        return "-"
    return "unknown" if r.hourly_cost is None else f"{r.hourly_cost:.3f}"


def teardown(
    ctx: typer.Context,
    data: bool = typer.Option(
        False,
        "--data",
        help="Also delete everything under the stage's S3 prefix (data, code, models; "
        "every version in a versioned bucket). Checkpoints and logs go without it.",
    ),
    yes: bool = YES_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete this project/stage's resources in dependency order; safe to run twice."""
    from dogclf import render
    from dogclf.aws.session import AwsContext
    from dogclf.aws.teardown import leftovers, plan_teardown, tagged_leftovers
    from dogclf.commands.context import state
    from dogclf.commands.plans import apply_plan, show_plan
    from dogclf.errors import DogclfError

    cfg = state(ctx).config()
    aws = AwsContext.from_config(cfg)
    plan = plan_teardown(aws, cfg, data=data)
    if show_plan(plan, dry_run=dry_run, as_json=as_json):
        return
    if plan.is_noop:
        _nothing_to_delete(tagged_leftovers(aws, cfg), cfg, as_json=as_json)
        return
    if not yes:
        _confirm(len(plan.changes))
    apply_plan(plan)
    left = leftovers(aws, cfg, data=data)
    if as_json:
        render.print_json({"deleted": [s.as_dict() for s in plan.changes], "left": left})
    if left["steps"] or left["tagged"]:
        lines = [f"{s['resource']} {s['name']}" for s in left["steps"]] + (left["tagged"] or [])
        raise DogclfError(
            "teardown finished but these remain:\n" + "\n".join(lines),
            "run `dogclf teardown` again in a few minutes; `dogclf status` shows their state",
        )
    if not as_json:
        swept = (
            "" if left["tagged"] is not None else " (tag sweep skipped: tag:GetResources denied)"
        )
        render.out.print(
            f"{cfg.project}/{cfg.stage}: deleted {len(plan.changes)} resource(s); nothing left{swept}",
            highlight=False,
        )


def _nothing_to_delete(tagged: list[str] | None, cfg: Any, *, as_json: bool) -> None:
    """Nothing dogclf deletes is left; anything still tagged as ours is an error."""
    from dogclf import render
    from dogclf.errors import DogclfError

    if tagged:  # tagged as ours, but of no kind dogclf knows how to delete
        raise DogclfError(
            "nothing left that dogclf deletes, but these are still tagged "
            f"dogclf:project={cfg.project}, dogclf:stage={cfg.stage}:\n" + "\n".join(tagged),
            "delete them in the AWS console (or with the tool that made them)",
        )
    if as_json:
        render.print_json({"deleted": [], "left": {"steps": [], "tagged": tagged}})
    else:
        render.out.print(f"{cfg.project}/{cfg.stage}: nothing to delete", highlight=False)


def _confirm(count: int) -> None:
    """Ask on a terminal; refuse without --yes anywhere else."""
    from dogclf.errors import DogclfError

    if not sys.stdin.isatty():
        raise DogclfError(
            f"teardown would delete {count} resource(s) and stdin is not a terminal",
            "pass --yes to confirm non-interactively (review the plan above first)",
        )
    typer.confirm(f"Delete these {count} resource(s)?", abort=True, err=True)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("teardown")(teardown)
