"""`dogclf report [MODEL | latest | JOB | TUNING-JOB]`: a run's training report.

A model (a model dir, model.tar.gz, s3:// URI, `latest`, or a training job's model) gives
its curves, test confusions and settings; a tuning job, its trials and the objective against
each tuned hyperparameter. The terminal gets a short summary table (or --json), the HTML
page goes to --out (a file named after the source by default), --open shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from dogclf.commands.options import JSON_OPTION
from dogclf.model.dataset import SPLITS

SOURCE_HELP = (
    "A model dir or model.tar.gz, an s3:// URI, 'latest' (the latest model pointer), a "
    "training job (its model) or a tuning job (its trials)."
)
# SageMaker's job name pattern: anything else is a path.
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


@dataclass
class Gathered:
    kind: str  # "model" | "tuning job"
    source: str
    html: str
    summary: dict[str, Any] = field(default_factory=dict)


def report(
    ctx: typer.Context,
    source: str = typer.Argument("latest", metavar="MODEL|latest|JOB|TUNING-JOB", help=SOURCE_HELP),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Where the HTML goes \\[default: ./report-<source>.html]."
    ),
    open_page: bool = typer.Option(False, "--open", help="Open the page in a web browser."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The training report: a summary here, curves and confusions in one HTML page."""
    from dogclf import render

    with render.err.status(f"reading {source}", spinner="dots"):
        gathered = gather(ctx, source)
    target = write_page(out or Path(f"report-{slug(source)}.html"), gathered.html)
    opened = open_in_browser(target) if open_page else False
    if as_json:
        render.print_json(
            {"source": source, "kind": gathered.kind, "html": str(target), "opened": opened}
            | {"summary": gathered.summary}
        )
        return
    if gathered.kind == "model":
        print_model_summary(gathered.summary)
    else:
        print_tuning_summary(gathered.summary)
    render.note(f"report: {target}" + (" (opened)" if opened else ""))


def gather(ctx: typer.Context, source: str) -> Gathered:
    """The page and the summary of `source`, whatever kind it is."""
    from dogclf.aws.model_source import is_remote
    from dogclf.commands.context import state

    if not is_remote(source) and (
        Path(source).expanduser().exists() or not JOB_NAME.fullmatch(source)
    ):
        return model_report(source)  # a missing path fails there, in one line
    cfg = state(ctx).config()
    if is_remote(source):
        return model_report(source, cfg)
    from dogclf.aws.report_sources import find_report_source
    from dogclf.aws.session import AwsContext
    from dogclf.training.report import tuning_html

    found = find_report_source(AwsContext.from_config(cfg), source)
    if found.kind == "tuning job":
        return Gathered("tuning job", source, tuning_html(found.tuning), found.tuning)
    assert found.model_data is not None
    return model_report(found.model_data, cfg)


def model_report(spec: str, cfg: Any = None) -> Gathered:
    from dogclf.aws.model_source import open_model_dir
    from dogclf.training import report as rp

    with open_model_dir(spec, cfg) as model_dir:
        metrics, labels = rp.read_model_report(model_dir)
        return Gathered("model", spec, rp.model_html(model_dir), rp.summary(metrics, labels))


def slug(source: str) -> str:
    """A file-name part for `source`: the job, run or folder it names."""
    generic = {"model.tar.gz", "model", "output", ".", ".."}
    parts = [p for p in re.split(r"[/\\]", source.removeprefix("s3://")) if p]
    name = next((p for p in reversed(parts) if p not in generic), "model")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.removesuffix(".tar.gz")) or "model"


def write_page(target: Path, html: str) -> Path:
    from dogclf.errors import DogclfError

    if target.is_dir():
        raise DogclfError(f"--out {target} is a directory", "give a file name, e.g. report.html")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise DogclfError(f"cannot write {target}: {exc.strerror}", "pick another --out") from None
    return target


def open_in_browser(target: Path) -> bool:
    import webbrowser

    return bool(webbrowser.open(target.resolve().as_uri()))


def _pct(split: dict[str, Any] | None) -> str:
    if not split:
        return "not run yet"
    return f"{split['accuracy']:.4f} accuracy, {split['loss']:.4f} loss"


def print_model_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from dogclf import render

    table = Table(show_header=False, show_edge=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("run", str(summary["status"]))
    table.add_row("model", f"{summary['arch']}, {summary['classes']} classes")
    table.add_row("best epoch", f"{summary['best_epoch']} of {summary['epochs_run']} run")
    for split in SPLITS:
        table.add_row(split, _pct(summary[split]))
    samples = summary.get("samples") or {}
    table.add_row("images", ", ".join(f"{k} {v}" for k, v in samples.items()))
    worst = [
        f"{w['label']} {w['correct']}/{w['total']}" for w in summary["worst_classes"] if w["total"]
    ]
    if worst:
        table.add_row("worst classes", ", ".join(worst))
    confused = [f"{c['true']} -> {c['predicted']} x{c['count']}" for c in summary["most_confused"]]
    if confused:
        table.add_row("most confused", ", ".join(confused))
    if summary.get("precision"):
        table.add_row("precision", str(summary["precision"]))
    if summary.get("seconds") is not None:
        table.add_row("time", f"{summary['seconds']:.1f} s")
    render.out.print(table)


def print_tuning_summary(tuning: dict[str, Any]) -> None:
    from rich.table import Table

    from dogclf import render

    metric, names = tuning["objective"]["metric"], list(tuning["parameters"])
    table = Table(
        title=f"{tuning['name']}: {tuning['status']}, {tuning['objective']['type']} {metric}",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    for column in ("trial", "status", metric, *names):
        table.add_column(column, overflow="fold")
    for trial in tuning["trials"]:
        value = trial["objective"]
        mark = " *" if trial["name"] == tuning["best"] else ""
        table.add_row(
            trial["name"] + mark,
            trial["status"],
            "—" if value is None else f"{value:.4f}",
            *(str(trial["hyperparameters"].get(n, "—")) for n in names),
        )
    render.out.print(table)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
