"""The training report: learning curves, test confusions, per-class accuracy, the run's
settings, as PNGs plus one self-contained HTML page in MODEL_DIR/report/.

It renders from plain data, metrics.json and labels.json, so what the page says is what
metrics.json says; it needs no torch. The figures need matplotlib (the torch extra), on
its non-interactive Agg canvas; without it the page still holds every table. The training
core calls write_report_safely(): a report is never a reason for a run to fail.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogclf.errors import DogclfError
from dogclf.model.dataset import SPLITS

REPORT_DIR = "report"  # inside the model dir, so model.tar.gz carries it as report/
HTML_FILE = "report.html"
CURVES_PNG = "curves.png"
CONFUSION_PNG = "confusion.png"
PER_CLASS_PNG = "per_class.png"
PNG_FILES = (CURVES_PNG, CONFUSION_PNG, PER_CLASS_PNG)
TOP_PAIRS = 20  # most-confused (true, predicted) pairs in the table
WORST_CLASSES = 15  # classes named in the per-class figure and table
# Set to 0/false/off: the training core writes no report (the figures cost seconds a run).
REPORT_ENV = "DOGCLF_TRAINING_REPORT"


@dataclass(frozen=True)
class ClassScore:
    """One class on the test split: images of it, and how many were called it."""

    label: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None


@dataclass(frozen=True)
class Confusion:
    """A (true, predicted) pair of different classes and how often it happened."""

    true: str
    predicted: str
    count: int
    share: float  # of the true class's test images


def class_scores(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> list[ClassScore]:
    """Per-class accuracy, worst first (classes without test images last)."""
    scores = [ClassScore(labels[i], int(row[i]), int(sum(row))) for i, row in enumerate(confusion)]
    return sorted(scores, key=lambda s: (s.accuracy is None, s.accuracy or 0.0, -s.total, s.label))


def confused_pairs(
    confusion: Sequence[Sequence[int]], labels: Sequence[str], top: int = TOP_PAIRS
) -> list[Confusion]:
    """The `top` off-diagonal cells with the most images, largest first."""
    pairs = [
        Confusion(labels[t], labels[p], int(count), int(count) / max(1, int(sum(row))))
        for t, row in enumerate(confusion)
        for p, count in enumerate(row)
        if t != p and count
    ]
    return sorted(pairs, key=lambda c: (-c.count, -c.share, c.true, c.predicted))[:top]


def run_status(metrics: dict[str, Any]) -> str:
    """How the run that wrote `metrics` went, in one line."""
    ran = metrics.get("epochs_run", 0)
    if metrics.get("failed"):
        return f"failed after {ran} epoch(s): {metrics['failed']}"
    if metrics.get("stopped_by_signal"):
        where = f"stopped by {metrics['stopped_by_signal']} in epoch {metrics['stopped_at_epoch']}"
        return where + ("; the best model so far was tested" if metrics.get("complete") else "")
    if not metrics.get("complete"):
        return f"in progress: written after epoch {ran} (best so far), test split not run yet"
    return "complete" + (f", early stop after epoch {ran}" if metrics.get("stopped_early") else "")


def test_confusion(metrics: dict[str, Any], labels: Sequence[str]) -> list[list[int]] | None:
    """metrics.json's test confusion counts, checked against the labels."""
    counts = metrics.get("test_confusion")
    if not counts:
        return None
    if len(counts) != len(labels) or any(len(row) != len(labels) for row in counts):
        raise DogclfError(
            f"metrics.json's test_confusion is not {len(labels)} x {len(labels)} (labels.json)",
            "the model directory is inconsistent: train it again",
        )
    return [[int(v) for v in row] for row in counts]


def summary(metrics: dict[str, Any], labels: Sequence[str], top: int = 5) -> dict[str, Any]:
    """What `dogclf report` prints: the headline numbers, all from metrics.json."""
    confusion = test_confusion(metrics, labels)
    scores = class_scores(confusion, labels) if confusion else []
    return {
        "status": run_status(metrics),
        "arch": metrics.get("hyperparameters", {}).get("arch"),
        "classes": len(labels),
        "best_epoch": metrics.get("best_epoch"),
        "epochs_run": metrics.get("epochs_run"),
        **{split: metrics.get(split) for split in SPLITS},
        "samples": metrics.get("samples"),
        "precision": (metrics.get("training_precision") or {}).get("label"),
        "seconds": (metrics.get("timings") or {}).get("total_seconds"),
        "worst_classes": [
            {"label": s.label, "accuracy": s.accuracy, "correct": s.correct, "total": s.total}
            for s in scores[:top]
        ],
        "most_confused": [
            {"true": c.true, "predicted": c.predicted, "count": c.count}
            for c in (confused_pairs(confusion, labels, top) if confusion else [])
        ],
    }


def render_figures(metrics: dict[str, Any], labels: Sequence[str]) -> dict[str, bytes]:
    """file name -> PNG bytes; {} without matplotlib (the page then holds the tables only)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return {}
    from dogclf.training import report_figures as figures

    history = metrics.get("history") or []
    pngs = {CURVES_PNG: figures.curves(history, metrics.get("best_epoch"))} if history else {}
    confusion = test_confusion(metrics, labels)
    if confusion:
        pngs[CONFUSION_PNG] = figures.confusion_heatmap(confusion, labels)
        pngs[PER_CLASS_PNG] = figures.per_class(class_scores(confusion, labels), WORST_CLASSES)
    return pngs


def render_html(metrics: dict[str, Any], labels: Sequence[str], pngs: dict[str, bytes]) -> str:
    from dogclf.training.report_html import model_page

    return model_page(metrics, labels, pngs)


def write_report(model_dir: Path, metrics: dict[str, Any], labels: Sequence[str]) -> Path:
    """MODEL_DIR/report/: the PNGs and report.html; returns the HTML's path. A figure this
    write does not make (no test confusion mid-run) is removed, never left stale."""
    folder = Path(model_dir) / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    pngs = render_figures(metrics, labels)
    for name in PNG_FILES:
        if name in pngs:
            _write_bytes(folder / name, pngs[name])
        else:
            (folder / name).unlink(missing_ok=True)
    html = folder / HTML_FILE
    _write_bytes(html, render_html(metrics, labels, pngs).encode("utf-8"))
    return html


def write_report_safely(
    model_dir: Path,
    metrics: dict[str, Any],
    labels: Sequence[str],
    log: Callable[[str], None],
) -> Path | None:
    """write_report, timed, one log line; any failure is one warning line and None."""
    if os.environ.get(REPORT_ENV, "").strip().lower() in ("0", "false", "off", "no"):
        return None  # asked for no report (a test suite's many tiny runs)
    started = time.perf_counter()
    try:
        html = write_report(model_dir, metrics, labels)
    except Exception as exc:  # matplotlib, the disk, odd metrics: the run goes on
        log(f"warning: training report not written: {type(exc).__name__}: {exc}")
        return None
    import importlib.util

    seconds = time.perf_counter() - started
    tables_only = importlib.util.find_spec("matplotlib") is None
    why = " (tables only: matplotlib is not installed, pip install matplotlib)"
    log(f"report written to {html} in {seconds:.1f} s" + (why if tables_only else ""))
    return html


def read_model_report(model_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """metrics.json and labels.json of a model dir, as the report reads them."""
    files = {name: Path(model_dir) / name for name in ("metrics.json", "labels.json")}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise DogclfError(
            f"{model_dir} has no {' or '.join(missing)}: no report to make",
            "pass a model trained by `dogclf train-*` (a model dir or its model.tar.gz)",
        )
    try:
        metrics = json.loads(files["metrics.json"].read_text(encoding="utf-8"))
        labels = json.loads(files["labels.json"].read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DogclfError(
            f"cannot read the metrics of {model_dir}: {exc}", "train the model again"
        ) from None
    if not isinstance(metrics, dict) or not isinstance(labels, list):
        raise DogclfError(f"{model_dir}: metrics.json or labels.json has the wrong shape")
    return metrics, [str(label) for label in labels]


def _write_bytes(path: Path, data: bytes) -> None:
    """Beside the target, then renamed: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def model_html(model_dir: Path) -> str:
    """The page of a model dir: the one training wrote into report/, else drawn now from
    its metrics.json (a model trained before reports existed)."""
    written = Path(model_dir) / REPORT_DIR / HTML_FILE
    metrics, labels = read_model_report(model_dir)
    if written.is_file():
        return written.read_text(encoding="utf-8")
    return render_html(metrics, labels, render_figures(metrics, labels))


def tuning_html(tuning: dict[str, Any]) -> str:
    """A tuning job's page from plain data: name, status, objective {metric, type},
    parameters {name: {kind, scale?, values?}}, trials [{name, status, objective,
    hyperparameters}], best (a trial's name or None)."""
    import importlib.util

    from dogclf.training.report_html import tuning_page

    png = None
    if tuning["trials"] and importlib.util.find_spec("matplotlib") is not None:
        from dogclf.training.report_figures import objective

        png = objective(
            tuning["trials"], tuning["parameters"], tuning["objective"]["metric"], tuning["best"]
        )
    return tuning_page(tuning, png)
