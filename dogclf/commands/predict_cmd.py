"""`dogclf predict IMG... | DIR`: top-k breeds from the endpoint, the Lambda, or a local model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from dogclf.commands.options import JSON_OPTION


class Via(StrEnum):
    endpoint = "endpoint"
    local = "local"
    lambda_ = "lambda"


BAR_WIDTH = 30


def predict(
    ctx: typer.Context,
    inputs: list[Path] = typer.Argument(
        ..., metavar="IMG... | DIR", help="Image files, or folders searched for images."
    ),
    via: Via = typer.Option(
        Via.endpoint,
        "--via",
        help="endpoint: the deployed SageMaker endpoint; local: a model in this process; "
        "lambda: the deployed Lambda function.",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="--via local: model.tar.gz, its folder, s3://..., or latest \\[default: latest].",
    ),
    top_k: int | None = typer.Option(
        None, "--top-k", min=1, max=133, help="Breeds per image \\[serving.top_k, 5]."
    ),
    endpoint_name: str | None = typer.Option(
        None, "--endpoint-name", help="--via endpoint: endpoint name \\[the derived name]."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, max=256, help="Images per request \\[serving.max_batch_size]."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Classify images: a table per image (breed, probability bar), or --json for scripts."""
    from dogclf import render
    from dogclf.commands.context import state
    from dogclf.predict.base import PredictOptions, make_predictor
    from dogclf.predict.files import collect_images

    cfg = state(ctx).config()
    if model is not None and via is not Via.local:
        render.warn(f"--model only applies to --via local; ignored for --via {via.value}")
    k = top_k or cfg.serving.top_k
    size = batch_size or cfg.serving.max_batch_size
    paths = collect_images(inputs)
    options = PredictOptions(model=model, endpoint_name=endpoint_name, top_k=k, batch_size=size)
    with make_predictor(via.value, cfg, options) as predictor:
        results, failures = _classify(predictor, paths, k, size, show_tables=not as_json)
    if as_json:
        render.print_json(results)
    if failures:
        raise typer.Exit(1)


def _classify(
    predictor: Any, paths: list[Path], k: int, size: int, *, show_tables: bool
) -> tuple[list[dict[str, Any]], int]:
    """Every image through `predictor`: the results, and how many failed (each failure
    printed at once on stderr, each success as a table unless --json)."""
    from rich.markup import escape

    from dogclf import render
    from dogclf.predict.files import predict_files

    results: list[dict[str, Any]] = []
    failures = 0
    with _progress(len(paths), size) as tick:
        for result in predict_files(predictor, paths, k, size):
            tick()
            results.append(result.as_dict())
            if result.error is not None:
                failures += 1
                what = escape(f"{result.image}: {result.error}")  # paths are not markup
                render.err.print(f"[bold red]Error:[/bold red] {what}", highlight=False)
            elif show_tables:
                _print_table(result.image, result.predictions or [])
    return results, failures


def _print_table(image: str, predictions: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from dogclf import render

    title = escape(image)  # a path, not markup
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("breed")
    table.add_column("probability", justify="right")
    table.add_column("")
    for rank, p in enumerate(predictions, 1):
        prob = float(p["probability"])
        bar = "█" * round(prob * BAR_WIDTH) or "▏"
        table.add_row(str(rank), str(p["label"]), f"{prob:.1%}", f"[cyan]{bar}[/cyan]")
    render.out.print(table)


@contextmanager
def _progress(total: int, batch_size: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when there are more images than one request holds."""
    if total <= batch_size:
        yield lambda: None
        return
    from rich.progress import Progress

    from dogclf import render

    with Progress(console=render.err, transient=True) as progress:
        task = progress.add_task("classifying", total=total)
        yield lambda: progress.advance(task)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
