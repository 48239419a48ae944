"""The report's HTML pages: one self-contained file each, figures embedded as data: URIs,
no script, no stylesheet or font from anywhere else, so it opens from a laptop, an S3
download or an email attachment alike. Every number on it is read from metrics.json."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from dogclf.training import report as rp

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1560px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}p.status{font-weight:bold}tr.best{background:#eaf6ea}
"""
PAIR_HEADER = ("#", "true", "predicted as", "images", "share of the true class")
WORST_HEADER = ("#", "class", "correct", "test images", "accuracy")


def fmt(value: Any) -> str:
    """How the page writes a value: 4 decimals for floats (3 significant digits below
    0.001, so a small learning rate stays readable), '—' for none."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def table(
    table_id: str, header: Sequence[str], rows: Sequence[Sequence[Any]], best_row: int = -1
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="n">{fmt(v)}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{html.escape(fmt(v))}</td>"
            for v in row
        )
        body.append(f'<tr class="best">{cells}</tr>' if i == best_row else f"<tr>{cells}</tr>")
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(body)}</table>'


def image(pngs: dict[str, bytes], name: str, alt: str) -> str:
    if name not in pngs:
        return "<p><em>Figure not drawn: matplotlib is not installed (the torch extra).</em></p>"
    data = base64.b64encode(pngs[name]).decode("ascii")
    return f'<img id="{name}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, body: Sequence[str]) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def model_page(metrics: dict[str, Any], labels: Sequence[str], pngs: dict[str, bytes]) -> str:
    arch = metrics.get("hyperparameters", {}).get("arch", "model")
    title = f"Training report: {arch}, {len(labels)} classes"
    return page(
        title,
        [
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="status" id="status">{html.escape(rp.run_status(metrics))}</p>',
            _results(metrics),
            *_curves(metrics, pngs),
            *_confusions(metrics, labels, pngs),
            *_settings(metrics, labels),
        ],
    )


def _results(metrics: dict[str, Any]) -> str:
    rows = [
        [f"{split} ({what})", (metrics.get(split) or {}).get("loss"), _acc(metrics, split)]
        for split, what in (
            ("train", f"epoch {metrics.get('best_epoch')}"),
            ("valid", f"epoch {metrics.get('best_epoch')}, the best"),
            ("test", "the best epoch's weights"),
        )
    ]
    return "<h2>Results</h2>" + table("results", ["split", "loss", "accuracy"], rows)


def _acc(metrics: dict[str, Any], split: str) -> Any:
    return (metrics.get(split) or {}).get("accuracy")


def _curves(metrics: dict[str, Any], pngs: dict[str, bytes]) -> list[str]:
    history = metrics.get("history") or []
    keys = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "lr", "seconds")
    rows = [[r["epoch"], *(r.get(k) for k in keys), r.get("train_images_per_s")] for r in history]
    best = next((i for i, r in enumerate(history) if r["epoch"] == metrics.get("best_epoch")), -1)
    header = ["epoch", "train loss", "train acc", "valid loss", "valid acc", "lr", "s", "img/s"]
    return [
        "<h2>Learning curves</h2>",
        image(pngs, rp.CURVES_PNG, "loss, accuracy and learning rate per epoch"),
        table("epochs", header, rows, best_row=best),
    ]


def _confusions(
    metrics: dict[str, Any], labels: Sequence[str], pngs: dict[str, bytes]
) -> list[str]:
    confusion = rp.test_confusion(metrics, labels)
    if confusion is None:
        note = (
            "<p><em>No test confusion: the test split is run once, at the end of the run.</em></p>"
        )
        return ["<h2>Test confusion</h2>", note]
    pairs = rp.confused_pairs(confusion, labels)
    worst = rp.class_scores(confusion, labels)[: rp.WORST_CLASSES]
    pair_rows = [[i + 1, c.true, c.predicted, c.count, c.share] for i, c in enumerate(pairs)]
    worst_rows = [[i + 1, s.label, s.correct, s.total, s.accuracy] for i, s in enumerate(worst)]
    return [
        "<h2>Test confusion</h2>",
        image(pngs, rp.CONFUSION_PNG, "confusion matrix on the test split"),
        f"<h3>The {len(pairs)} most-confused pairs</h3>",
        table("confused-pairs", PAIR_HEADER, pair_rows),
        "<h2>Per-class accuracy</h2>",
        image(pngs, rp.PER_CLASS_PNG, "test accuracy per class"),
        f"<h3>The {len(worst)} worst classes</h3>",
        table("worst-classes", WORST_HEADER, worst_rows),
    ]


def _settings(metrics: dict[str, Any], labels: Sequence[str]) -> list[str]:
    hps = metrics.get("hyperparameters") or {}
    samples = metrics.get("samples") or {}
    data_rows = [[split, count] for split, count in samples.items()]
    data_rows += [["classes", len(labels)], ["processes (world size)", metrics.get("world_size")]]
    data_rows.append(["train images per process", str(metrics.get("samples_per_rank"))])
    return [
        "<h2>Hyperparameters</h2>",
        table("hyperparameters", ["name", "value"], [[k, str(v)] for k, v in hps.items()]),
        "<h2>Data</h2>",
        table("data", ["what", "images"], data_rows),
        "<h2>Precision</h2>",
        table("precision", ["what", "value"], _precision_rows(metrics)),
        "<h2>Timings</h2>",
        table("timings", ["what", "seconds"], _timing_rows(metrics)),
    ]


def _precision_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    training = metrics.get("training_precision") or {}
    int8 = metrics.get("int8") or {}
    rows: list[list[Any]] = [
        ["training", training.get("label")],
        ["why", training.get("reason")],
        ["int8 for serving", "usable" if int8.get("usable") else "not usable"],
    ]
    if int8.get("agreement") is not None:
        rows.append(["int8 top-1 agreement with fp32 (%)", f"{int8['agreement']:.2f}"])
    if int8.get("reason"):
        rows.append(["int8: why not", int8["reason"]])
    return rows


def _timing_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    timings = metrics.get("timings") or {}
    history = metrics.get("history") or []
    rows: list[list[Any]] = [
        ["whole run", timings.get("total_seconds")],
        ["epochs (train + valid)", timings.get("epochs_seconds")],
        ["test split", timings.get("test_seconds")],
    ]
    if history:
        mean = sum(r.get("seconds", 0.0) for r in history) / len(history)
        rows.append(["mean epoch", round(mean, 3)])
    calibration = (metrics.get("int8") or {}).get("calibration_seconds")
    if calibration is not None:
        rows.append(["int8 calibration", calibration])
    return rows


def tuning_page(tuning: dict[str, Any], png: bytes | None) -> str:
    """A tuning job: its trials (name, status, objective, hyperparameters) and the objective
    against each tuned hyperparameter."""
    objective = tuning["objective"]
    names = list(tuning["parameters"])
    rows = [
        [t["name"], t["status"], t.get("objective"), *(t["hyperparameters"].get(n) for n in names)]
        for t in tuning["trials"]
    ]
    best = next((i for i, t in enumerate(tuning["trials"]) if t["name"] == tuning["best"]), -1)
    title = f"Tuning report: {tuning['name']}"
    figure = image({"objective.png": png} if png else {}, "objective.png", "objective per value")
    return page(
        title,
        [
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="status" id="status">{html.escape(tuning["status"])}: '
            f"{html.escape(objective['type'])} {html.escape(objective['metric'])}, "
            f"best trial {html.escape(str(tuning['best']))}</p>",
            f"<h2>{html.escape(objective['metric'])} against each tuned hyperparameter</h2>",
            figure,
            f"<h2>Trials ({len(rows)})</h2>",
            table("trials", ["trial", "status", objective["metric"], *names], rows, best),
        ],
    )
