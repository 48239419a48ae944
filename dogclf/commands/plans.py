"""How every mutating command shows and applies its plan: a table on stderr, --dry-run stops
there (with the plan as JSON under --json), apply shows a spinner and a line per step."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from dogclf import render
from dogclf.plan import Action, Plan, StepResult, run_plan

STYLE = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red", Action.NOOP: "dim"}


def render_plan(plan: Plan) -> None:
    table = Table(title=plan.title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("action")
    table.add_column("resource")
    table.add_column("name", overflow="fold")
    table.add_column("what")
    for s in plan.steps:
        table.add_row(f"[{STYLE[s.action]}]{s.action}[/]", s.resource, s.name, s.message)
    render.err.print(table)
    c = plan.counts()
    render.note(
        f"{c['create']} to create, {c['update']} to update, {c['delete']} to delete, "
        f"{c['no-op']} unchanged"
    )


def show_plan(plan: Plan, *, dry_run: bool, as_json: bool, **extra: Any) -> bool:
    """Print the plan on stderr; under --dry-run also the result (JSON) and return True."""
    render_plan(plan)
    if not dry_run:
        return False
    if as_json:
        render.print_json({"dry_run": True, "plan": plan.as_dict(), **extra})
    else:
        render.note("dry run: nothing was changed")
    return True


def apply_plan(plan: Plan, *, quiet: bool = False) -> list[StepResult]:
    """Run each changing step in order, a spinner while it runs; a failure stops the plan."""

    def announce(step: Any, run: Any) -> Any:
        with render.err.status(f"{step.action} {step.resource} {step.name}", spinner="dots"):
            return run()

    def done(result: StepResult) -> None:
        if not quiet:
            step = result.step
            render.success(f"{step.action} {step.resource} {step.name}: {step.message}")

    return run_plan(plan, around=announce, on_done=done)
