"""The training report (issue 15, part 1): its PNGs and self-contained HTML page, the numbers
on it against metrics.json, the report inside model.tar.gz of a real training run, the
curves a stopped or failed run leaves, and `dogclf report` on a local model, a training job,
`latest` and a tuning job against the emulator."""

from __future__ import annotations

import base64
import io
import json
import random
import re
import signal
import tarfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aws_support import BUCKET, Project, uploaded_project
from PIL import Image
from serving_support import TrainedModel
from typer.testing import CliRunner

from dogclf.cli import app
from dogclf.local.emulator import Emulator
from dogclf.training import report as rp
from dogclf.training import report_figures as figures
from dogclf.training.synthetic import make_dataset

# ---------------------------------------------------------------- reading a page back


class Tables(HTMLParser):
    """Every <table id=...> of a page as rows of cell texts, and every src= value."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.sources: list[str] = []
        self.current: str | None = None
        self.cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if "src" in values:
            self.sources.append(values["src"] or "")
        if tag == "table":
            self.current = values.get("id") or ""
            self.tables[self.current] = []
        elif tag == "tr" and self.current is not None:
            self.tables[self.current].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.current is not None:
            self.tables[self.current][-1].append("".join(self.cell))
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def body(self, table_id: str) -> list[list[str]]:
        return self.tables[table_id][1:]  # without the header row


def assert_self_contained(page: str) -> Tables:
    """Only embedded PNGs; nothing the page would fetch (no script, stylesheet, link, url)."""
    parsed = Tables(page)
    assert parsed.sources and all(s.startswith("data:image/png;base64,") for s in parsed.sources)
    for fetched in ("http:", "https:", "file:", "<script", "<link", "url(", "@import"):
        assert fetched not in page.lower()
    return parsed


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every pixel: a broken PNG raises here
    assert image.format == "PNG"
    return image.size


def embedded_pngs(page: str) -> dict[str, bytes]:
    found = re.findall(r'<img id="([^"]+)"[^>]*src="data:image/png;base64,([^"]+)"', page)
    return {name: base64.b64decode(data) for name, data in found}


def f4(value: float) -> str:
    """The page's way to write a number (report_html.fmt): 4 decimals."""
    return f"{value:.3g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"


def assert_numbers_match(page: str, metrics: dict[str, Any], labels: list[str]) -> None:
    """Every number the page shows is metrics.json's (4 decimals), recomputed here."""
    tables = assert_self_contained(page)
    results = {row[0].split(" ")[0]: row[1:] for row in tables.body("results")}
    for split in ("train", "valid"):
        assert results[split] == [f4(metrics[split]["loss"]), f4(metrics[split]["accuracy"])]
    test = metrics["test"]
    assert results["test"] == (
        ["—", "—"] if test is None else [f4(test["loss"]), f4(test["accuracy"])]
    )
    epochs = [row[:5] for row in tables.body("epochs")]
    keys = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy")
    assert epochs == [[str(r["epoch"]), *(f4(r[k]) for k in keys)] for r in metrics["history"]]
    hps = dict(row for row in tables.body("hyperparameters"))  # type: ignore[misc]
    assert hps == {k: str(v) for k, v in metrics["hyperparameters"].items()}
    assert dict(row for row in tables.body("data"))["test"] == str(metrics["samples"]["test"])  # type: ignore[misc]
    confusion = metrics["test_confusion"]
    if confusion is None:
        assert "confused-pairs" not in tables.tables
        return
    off_diagonal = sorted(
        (c for t, row in enumerate(confusion) for p, c in enumerate(row) if t != p and c),
        reverse=True,
    )
    pairs = tables.body("confused-pairs")
    assert [int(row[3]) for row in pairs] == off_diagonal[: rp.TOP_PAIRS]
    for _, true, predicted, count, _share in pairs:
        assert confusion[labels.index(true)][labels.index(predicted)] == int(count)
    accuracies = sorted(row[t] / sum(row) for t, row in enumerate(confusion) if sum(row))
    worst = tables.body("worst-classes")
    assert [row[4] for row in worst] == [f4(a) for a in accuracies[: rp.WORST_CLASSES]]
    for _, label, correct, total, _acc in worst:
        row = confusion[labels.index(label)]
        assert (int(correct), int(total)) == (row[labels.index(label)], sum(row))


# ---------------------------------------------------------------- synthetic, 133 breeds


def synthetic_metrics(
    classes: int, epochs: int = 6, seed: int = 1
) -> tuple[dict[str, Any], list[str]]:
    """metrics.json as the training core writes it, with made-up numbers: no training."""
    rng = random.Random(seed)
    labels = [f"Breed_{i:03d}" + "_long_name" * (i % 4) for i in range(classes)]
    confusion = [[0] * classes for _ in range(classes)]
    for t in range(classes):
        total = rng.randint(3, 12)
        confusion[t][t] = rng.randint(0, total)
        for _ in range(total - confusion[t][t]):
            confusion[t][rng.choice([p for p in range(classes) if p != t])] += 1
    history = [
        {
            "epoch": e + 1, "train_loss": 4.0 / (e + 1), "train_accuracy": 0.1 * e,
            "valid_loss": 4.2 / (e + 1), "valid_accuracy": 0.09 * e, "lr": 0.01 * (1 - e / epochs),
            "seconds": 60.0 + e, "train_images_per_s": 110.0, "data_share": 0.1,
            "samples_per_rank": [6680],
        }
        for e in range(epochs)
    ]  # fmt: skip
    best = history[-2]
    tested = sum(map(sum, confusion))
    metrics = {
        "train": {"loss": best["train_loss"], "accuracy": best["train_accuracy"]},
        "valid": {"loss": best["valid_loss"], "accuracy": best["valid_accuracy"]},
        "test": {"loss": 1.234, "accuracy": sum(confusion[i][i] for i in range(classes)) / tested},
        "complete": True, "best_epoch": best["epoch"], "epochs_run": epochs,
        "stopped_early": False, "stopped_by_signal": None, "stopped_at_epoch": None,
        "hyperparameters": {"arch": "resnet50", "lr": 0.01, "epochs": epochs, "amp": True},
        "world_size": 1, "samples": {"train": 6680, "valid": 835, "test": tested},
        "samples_per_rank": [6680], "history": history, "test_confusion": confusion,
        "training_precision": {"label": "bf16-autocast", "reason": "cuda sm_90: native bf16"},
        "timings": {"total_seconds": 400.5, "epochs_seconds": 375.0, "test_seconds": 8.25},
        "int8": {"usable": False, "reason": "no x86/fbgemm quantized engine"},
    }  # fmt: skip
    return metrics, labels


def test_133_breeds_render_readable_pngs_and_a_self_contained_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics, labels = synthetic_metrics(133)
    started = time.perf_counter()
    html = rp.write_report(tmp_path, metrics, labels)
    seconds = time.perf_counter() - started
    print(f"133-class report written in {seconds:.2f} s")  # the figure in the notes
    folder = tmp_path / rp.REPORT_DIR
    assert html == folder / rp.HTML_FILE
    expected = {
        rp.CURVES_PNG: figures.CURVES_PX,
        rp.CONFUSION_PNG: figures.confusion_px(133),
        rp.PER_CLASS_PNG: figures.PER_CLASS_PX,
    }
    assert {name: png_size((folder / name).read_bytes()) for name in expected} == expected
    assert figures.confusion_px(133)[0] >= 10 * 133  # ~10 px a cell: every breed readable
    page = html.read_text(encoding="utf-8")
    assert embedded_pngs(page) == {name: (folder / name).read_bytes() for name in expected}
    assert_numbers_match(page, metrics, labels)
    assert len(Tables(page).body("confused-pairs")) == 20
    assert len(Tables(page).body("worst-classes")) == 15

    # Mid-run (no test split yet): curves only; the last write's confusion figures go.
    mid = {**metrics, "test": None, "test_confusion": None, "complete": False}
    page = rp.write_report(tmp_path, mid, labels).read_text(encoding="utf-8")
    assert sorted(p.name for p in folder.glob("*.png")) == [rp.CURVES_PNG]
    assert "No test confusion" in page and "in progress" in page
    assert_numbers_match(page, mid, labels)

    # Rendering never fails a run: a broken metrics.json is one warning line, no exception.
    monkeypatch.setenv(rp.REPORT_ENV, "1")
    lines: list[str] = []
    broken = {**metrics, "test_confusion": [[1, 2]]}
    assert rp.write_report_safely(tmp_path / "other", broken, labels, lines.append) is None
    assert len(lines) == 1 and lines[0].startswith("warning: training report not written")
    monkeypatch.setenv(rp.REPORT_ENV, "0")  # the suite's switch for its tiny runs
    assert rp.write_report_safely(tmp_path / "off", metrics, labels, lines.append) is None
    assert not (tmp_path / "off").exists() and len(lines) == 1


# ---------------------------------------------------------------- a real training run


def test_model_tar_carries_the_report_and_dogclf_report_shows_it(
    trained_model: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tarfile.open(trained_model.tar) as archive:
        names = set(archive.getnames())
        packed = {
            n: archive.extractfile(n).read()  # type: ignore[union-attr]
            for n in names
            if n.startswith("report/")
        }
    assert set(packed) == {f"report/{n}" for n in (rp.HTML_FILE, *rp.PNG_FILES)}
    metrics = json.loads((trained_model.extracted / "metrics.json").read_text())
    labels = trained_model.labels
    confusion = metrics["test_confusion"]
    assert sum(map(sum, confusion)) == metrics["samples"]["test"]
    trace = sum(confusion[i][i] for i in range(len(labels)))
    assert trace / metrics["samples"]["test"] == pytest.approx(metrics["test"]["accuracy"])
    assert set(metrics["timings"]) == {"total_seconds", "epochs_seconds", "test_seconds"}
    assert metrics["training_precision"]["label"] == "fp32"
    page = packed[f"report/{rp.HTML_FILE}"].decode()
    assert_numbers_match(page, metrics, labels)
    assert png_size(packed[f"report/{rp.CURVES_PNG}"]) == figures.CURVES_PX
    assert png_size(packed[f"report/{rp.CONFUSION_PNG}"]) == figures.confusion_px(3)
    assert "complete" in page and f"{len(metrics['history'])}</td>" in page

    runner, out = CliRunner(), tmp_path / "r.html"
    done = runner.invoke(app, ["report", str(trained_model.tar), "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    shown = json.loads(done.stdout)
    assert shown["kind"] == "model" and shown["html"] == str(out) and shown["opened"] is False
    assert shown["summary"]["test"] == metrics["test"]
    assert shown["summary"]["best_epoch"] == metrics["best_epoch"]
    assert out.read_bytes() == packed[f"report/{rp.HTML_FILE}"]  # the page training wrote

    # No browser here: record what --open would show instead of opening it.
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda uri: opened.append(uri) or True)
    monkeypatch.chdir(tmp_path)
    table = runner.invoke(app, ["report", str(trained_model.extracted), "--open"])
    assert table.exit_code == 0, table.output
    assert "best epoch" in table.stdout and f"{metrics['test']['accuracy']:.4f}" in table.stdout
    default = tmp_path / "report-extracted.html"
    assert opened == [default.resolve().as_uri()] and default.is_file()


def test_a_stopped_and_a_failed_run_keep_their_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dogclf.training import train
    from dogclf.training.stopping import StopRequest

    monkeypatch.setenv(rp.REPORT_ENV, "1")  # conftest turns reports off for other tests

    data = make_dataset(tmp_path / "data", classes=3, per_class=6, size_range=(32, 40), seed=5)

    def args(name: str) -> Any:
        return train.parse_args(
            [
                "--data-dir", str(data), "--model-dir", str(tmp_path / name / "model"),
                "--checkpoint-dir", str(tmp_path / name / "ckpt"), "--arch", "tiny_cnn",
                "--epochs", "3", "--batch-size", "8", "--image-size", "32",
                "--num-workers", "0", "--patience", "0", "--lr", "0.01",
                "--int8-min-agreement", "101",
            ],
            environ={},
        )  # fmt: skip

    # Stopped: SIGTERM's handler after epoch 2, so epoch 3 never starts.
    stop, seen = StopRequest(), {}
    model = tmp_path / "stopped" / "model"

    def on_epoch(record: dict[str, Any], _epochs: int) -> None:
        if record["epoch"] == 1:  # the model dir mid-run: curves, no test confusion yet
            seen["pngs"] = sorted(p.name for p in (model / rp.REPORT_DIR).glob("*.png"))
            seen["metrics"] = json.loads((model / "metrics.json").read_text())
        if record["epoch"] == 2:
            stop.handle(signal.SIGTERM, None)

    result = train.main(
        args("stopped"), train.Hooks(log=lambda _: None, on_epoch=on_epoch, stop=stop)
    )
    assert seen["pngs"] == [rp.CURVES_PNG] and seen["metrics"]["complete"] is False
    assert result.metrics["stopped_by_signal"] == "SIGTERM" and result.metrics["epochs_run"] == 2
    page = (model / rp.REPORT_DIR / rp.HTML_FILE).read_text()
    assert "stopped by SIGTERM in epoch 3" in page
    assert len(Tables(page).body("epochs")) == 2
    labels = json.loads((model / "labels.json").read_text())
    assert_numbers_match(page, json.loads((model / "metrics.json").read_text()), labels)

    # Failed: an error after epoch 2 (a full disk, a dead GPU) still leaves both epochs' curves.
    def fail(record: dict[str, Any], _epochs: int) -> None:
        if record["epoch"] == 2:
            raise RuntimeError("the GPU fell off the bus")

    with pytest.raises(RuntimeError):
        train.main(args("failed"), train.Hooks(log=lambda _: None, on_epoch=fail))
    model = tmp_path / "failed" / "model"
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["failed"] == "RuntimeError: the GPU fell off the bus"
    assert metrics["epochs_run"] == 2 and metrics["complete"] is False
    page = (model / rp.REPORT_DIR / rp.HTML_FILE).read_text()
    assert "failed after 2 epoch(s)" in page and len(Tables(page).body("epochs")) == 2
    assert png_size((model / rp.REPORT_DIR / rp.CURVES_PNG).read_bytes()) == figures.CURVES_PX
    assert_numbers_match(page, metrics, json.loads((model / "labels.json").read_text()))


# ---------------------------------------------------------------- jobs on the emulator


def test_report_of_a_job_latest_a_tuning_job_and_bad_input(
    aws: Emulator,
    trained_model: TrainedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    project: Project = uploaded_project(tmp_path, aws, monkeypatch)
    project.script("training-job", ["InProgress", "Completed"], metrics={"valid_accuracy": 0.5})
    trained = project.run_json("train-sagemaker", "--poll-interval", "0")
    job = trained["job"]
    key = trained["model_data"].removeprefix(f"s3://{BUCKET}/")
    boto3.client("s3").upload_file(str(trained_model.tar), BUCKET, key)  # what SageMaker uploads
    metrics = json.loads((trained_model.extracted / "metrics.json").read_text())
    for source in (job, "latest"):
        shown = project.run_json("report", source)
        assert shown["kind"] == "model" and shown["summary"]["test"] == metrics["test"]
        assert Path(shown["html"]).name == f"report-{source}.html"
        assert_numbers_match(Path(shown["html"]).read_text(), metrics, trained_model.labels)

    tuned = project.run_json("train-sagemaker", "--tune", "--poll-interval", "0")
    shown = project.run_json("report", tuned["tuning_job"])
    tuning = shown["summary"]
    assert shown["kind"] == "tuning job" and tuning["best"] == tuned["best_training_job"]
    assert set(tuning["parameters"]) == {"lr", "batch-size", "epochs"}
    assert len(tuning["trials"]) == 4
    objectives = [t["objective"] for t in tuning["trials"]]
    assert objectives == sorted(objectives, reverse=True)  # Maximize: best first
    page = Path(shown["html"]).read_text()
    tables = assert_self_contained(page)
    size = png_size(embedded_pngs(page)["objective.png"])
    assert size == figures.objective_px(3)
    assert [row[0] for row in tables.body("trials")] == [t["name"] for t in tuning["trials"]]
    table = project.run("report", tuned["tuning_job"])
    assert table.exit_code == 0 and "Completed" in table.stdout

    (tmp_path / "empty").mkdir()
    for bad, says in (
        ("no-such-job", "no training or tuning job named no-such-job"),
        ("missing/model.tar.gz", "model missing/model.tar.gz does not exist"),
        ("empty", "is not a model directory"),
    ):
        done = project.run("report", bad)
        assert done.exit_code == 1 and says in done.stderr, done.output
        assert done.stderr.count("Error:") == 1 and "Traceback" not in done.stderr
