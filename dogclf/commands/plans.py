"""How every mutating command shows and applies its plan: a table on stderr, --dry-run stops
there (with the plan as JSON under --json), apply shows a spinner and a line per step.

Off a terminal (a log) the table keeps one line per step with every name and message whole
(render.DogclfConsole) and the spinner shows nothing: the step lines remain."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from dogclf import render
from dogclf.plan import Action, Plan, StepResult, run_plan

STYLE = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red", Action.NOOP: "dim"}


def render_plan(plan: Plan) -> None:
    # Names and messages quote the user's values: never read as markup.
    title = escape(plan.title)
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("action")
    table.add_column("resource")
    table.add_column("name", overflow="fold")
    table.add_column("what")
    for s in plan.steps:
        cells = (escape(s.resource), escape(s.name), escape(s.message))
        table.add_row(f"[{STYLE[s.action]}]{s.action}[/]", *cells)
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
        what = escape(f"{step.action} {step.resource} {step.name}")
        with render.err.status(what, spinner="dots"):
            return run()

    def done(result: StepResult) -> None:
        if not quiet:
            step = result.step
            render.success(f"{step.action} {step.resource} {step.name}: {step.message}")

    return run_plan(plan, around=announce, on_done=done)
