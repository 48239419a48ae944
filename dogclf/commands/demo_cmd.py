"""`dogclf demo`: the whole pipeline rehearsed on the embedded AWS emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from dogclf.commands.options import JSON_OPTION

KEEP_OPTION = typer.Option(
    False,
    "--keep",
    help="Skip teardown; leave the emulator and the endpoint's server running and print the "
    "environment that points any dogclf (or aws) command at them. Ctrl-C stops them.",
)
FAULTS_OPTION = typer.Option(
    0.0,
    "--faults",
    min=0.0,
    max=0.3,
    metavar="RATE",
    help="Rehearse against a flaky AWS: this share of requests is throttled or fails "
    "(500/503), half as many lose their answer after taking effect, and a new role "
    "takes 2 s to be assumable. Reproducible (seeded). E.g. 0.05.",
)
LAMBDA_LIMIT_OPTION = typer.Option(
    None,
    "--lambda-concurrency-limit",
    min=1,
    metavar="N",
    help="The emulated account's Lambda concurrency limit (default 1000). 10, a new "
    "account's, shows lambda-deploy refusing the demo's reserve in its plan.",
)
SERVERLESS_OPTION = typer.Option(
    False,
    "--serverless",
    help="Deploy a serverless endpoint (2048 MB, max concurrency 5, 1 provisioned) "
    "instead of a real-time one; `scale` then says it scales itself.",
)


def demo(
    ctx: typer.Context,
    workdir: Path = typer.Option(
        Path("demo-work"), "--workdir", help="Where the dataset, jobs, config and logs go."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Use this dogImages folder instead of generating one."
    ),
    keep: bool = KEEP_OPTION,
    classes: int = typer.Option(5, "--classes", min=2, max=16, help="Breeds to generate."),
    images_per_class: int = typer.Option(
        40, "--images-per-class", min=6, max=500, help="Images per breed (70/15/15 split)."
    ),
    epochs: int = typer.Option(6, "--epochs", min=1, max=100, help="Training epochs."),
    faults: float = FAULTS_OPTION,
    lambda_limit: int | None = LAMBDA_LIMIT_OPTION,
    serverless: bool = SERVERLESS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Upload -> train -> deploy -> scale -> lambda-deploy -> predict -> status -> teardown,
    on an embedded AWS emulator: no account, no Docker, no network."""
    from dogclf.errors import require_extras

    require_extras("demo", ("torch", "torch"), ("moto", "emulator"))
    from dogclf.local.demo import DemoOptions

    opts = DemoOptions(
        workdir,
        data,
        keep,
        classes,
        images_per_class,
        epochs,
        faults=faults,
        lambda_concurrency_limit=lambda_limit,
        serverless=serverless,
    )
    _run(ctx, opts, as_json)


def _run(ctx: typer.Context, opts: Any, as_json: bool) -> None:
    """Each step a real command through this CLI's group, then the summary (and --keep)."""
    from dogclf import render
    from dogclf.commands.in_process import command_runner
    from dogclf.errors import DogclfError
    from dogclf.local.demo import Demo, isolated_environ

    group = ctx.find_root().command
    assert isinstance(group, TyperGroup)
    run = command_runner(group)
    with isolated_environ():
        runner = Demo(opts, _narrate, _on_done, run=run)
        result = runner.run()
        if as_json:
            render.print_json(result.as_dict())
        else:
            _print_summary(result)
        failed = result.failed_step
        if failed is not None:
            raise DogclfError(
                f"demo step `{failed.name}` failed: {failed.error}",
                f"rerun with --debug; logs are under {opts.workdir}",
            )
        if opts.keep:
            _hold(runner, result.env)


def _narrate(line: str) -> None:
    from dogclf import render

    render.err.rule(f"[bold]{line}[/bold]", align="left")


def _on_done(report: Any) -> None:
    from dogclf import render

    if report.ok:
        render.success(f"{report.name} ({report.seconds:.1f} s): {report.created}")
    else:
        from rich.markup import escape

        render.err.print(f"[bold red]✗ {report.name}:[/bold red] {escape(str(report.error))}")


def _print_summary(result: Any) -> None:
    from rich.table import Table

    from dogclf import render

    table = Table(title="dogclf demo", title_justify="left", show_edge=False)
    table.add_column("step")
    table.add_column("", justify="center")
    table.add_column("seconds", justify="right")
    table.add_column("what it made", overflow="fold")
    for s in result.steps:
        mark = "[green]ok[/green]" if s.ok else "[red]FAILED[/red]"
        table.add_row(s.name, mark, f"{s.seconds:.1f}", s.created if s.ok else str(s.error))
    render.out.print(table)
    if result.classes:
        chance = 1 / result.classes
        for via, acc in result.accuracy.items():
            render.out.print(
                f"test accuracy via {via}: [bold]{acc:.1%}[/bold] "
                f"({result.classes} breeds, chance {chance:.1%})",
                highlight=False,
            )
    if result.paths_agree is not None:
        agree = "the same" if result.paths_agree else "DIFFERENT"
        render.out.print(f"Lambda and endpoint gave {agree} top-1 breed for every image")
    for step, code in result.aws_code.items():
        render.out.print(f"AWS's own code: {step} ran {code}", highlight=False)
    if result.left_after_teardown == []:
        render.out.print("teardown: nothing left in the emulated account")
    if result.faults is not None:
        render.out.print(fault_line(result.faults), highlight=False)


def fault_line(counts: dict[str, int]) -> str:
    """`faults injected: 31 (throttle 9, 500 8, ...)`; dogclf retried every one."""
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
    return f"faults injected: {sum(counts.values())}" + (f" ({kinds})" if kinds else "")


def _hold(runner: Any, env: dict[str, str]) -> None:
    """--keep: print the environment, then wait for Ctrl-C / SIGTERM."""
    import signal
    import threading

    from dogclf import render

    render.err.print(
        "\nThe emulator and the endpoint's server keep running. In another shell:",
        highlight=False,
    )
    for key, value in sorted(env.items()):
        render.err.print(f"export {key}={value}", highlight=False, markup=False)
    render.err.print(
        "then e.g. `dogclf status`, `dogclf predict IMG`, `dogclf teardown --yes`, "
        "`aws s3 ls`. Ctrl-C here stops both.",
        highlight=False,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        runner.close()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
