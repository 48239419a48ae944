"""The report's figures as PNG bytes, drawn on matplotlib's Agg canvas.

matplotlib.figure.Figure with its own FigureCanvasAgg: no pyplot, so no global backend or
figure registry (nothing to close, safe in any process). Sizes are fixed pixel sizes
(inches x DPI, no tight bounding box), so a reader, and the tests, know what to expect.
Margins are fixed too, not a layout engine's: that draws the figure twice, and at 133
classes the 266 tick labels are most of the cost.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dogclf.training.report import ClassScore

DPI = 100
CURVES_PX = (1500, 450)
PER_CLASS_PX = (1500, 560)
OBJECTIVE_PANEL_PX = (440, 400)  # one panel per tuned hyperparameter
LABEL_CHARS = 20  # breed names shortened to this on the heatmap's axes
WORST_COLOR, OTHER_COLOR = "#c0392b", "#4a7ab5"


def confusion_px(classes: int) -> tuple[int, int]:
    """Square, ~10 px a cell at 133 classes plus room for the labels, 800 to 2000 px."""
    side = min(2000, max(800, 10 * classes + 320))
    return side, side


def objective_px(panels: int) -> tuple[int, int]:
    return OBJECTIVE_PANEL_PX[0] * max(1, panels), OBJECTIVE_PANEL_PX[1]


def _figure(px: tuple[int, int]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(px[0] / DPI, px[1] / DPI), dpi=DPI)


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def curves(history: Sequence[dict[str, Any]], best_epoch: int | None) -> bytes:
    """Loss, accuracy (train and valid) and learning rate per epoch; the best epoch marked."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(CURVES_PX)
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.12, top=0.91, wspace=0.18)
    epochs = [r["epoch"] for r in history]
    for ax, key, title in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "accuracy")):
        for split, style in (("train", "o-"), ("valid", "s-")):
            ax.plot(epochs, [r[f"{split}_{key}"] for r in history], style, label=split, ms=4)
        ax.set_title(title)
    lr_ax.plot(epochs, [r["lr"] for r in history], "o-", color="gray", ms=4)
    lr_ax.set_title("learning rate (at the epoch's start)")
    best = next((r for r in history if r["epoch"] == best_epoch), None)
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if best is not None:
            ax.axvline(
                best["epoch"], color="green", ls="--", lw=1, label=f"best epoch {best_epoch}"
            )
    if best is not None:
        acc_ax.plot([best["epoch"]], [best["valid_accuracy"]], "*", color="green", ms=14)
    for ax in (loss_ax, acc_ax):
        ax.legend(loc="best", fontsize=9)
    acc_ax.set_ylim(0, 1.02)
    return _png(fig)


def _short(label: str) -> str:
    """Shorter tick labels: every glyph is drawn one by one (matplotlib 3.11's Agg text)."""
    label = label.replace("_", " ")
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def confusion_heatmap(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """Rows: the true class, columns: the prediction, colour: the share of the true class
    (square-root scale, so one image in 50 still shows). Counts written in at <= 25 classes."""
    import numpy as np
    from matplotlib.colors import PowerNorm

    counts = np.asarray(confusion, dtype=np.float64)
    n = len(labels)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = confusion_px(n)[0]
    fig = _figure((side, side))
    fontsize = 9 if n <= 25 else (7 if n <= 60 else 5)
    labels_px = 60 + 14 * fontsize  # the names, left and below
    margin, cell_area = labels_px / side, (side - labels_px - 110) / side
    ax = fig.add_axes((margin, margin, cell_area, cell_area))
    colorbar_ax = fig.add_axes((margin + cell_area + 25 / side, margin, 18 / side, cell_area))
    image = ax.imshow(shares, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1), aspect="equal")
    names = [_short(label) for label in labels]
    ax.set_xticks(range(n), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    ax.tick_params(length=0)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test confusion ({int(counts.sum())} images, {n} classes)")
    if n <= 25:
        for (t, p), count in np.ndenumerate(counts):
            if count:
                color = "white" if shares[t, p] > 0.5 else "black"
                ax.text(p, t, f"{int(count)}", ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(image, cax=colorbar_ax, label="share of the true class")
    return _png(fig)


def per_class(scores: Sequence[ClassScore], worst: int) -> bytes:
    """Left: every class's test accuracy, worst to best; right: the `worst` ones named."""
    fig = _figure(PER_CLASS_PX)
    all_ax = fig.add_axes((0.04, 0.06, 0.50, 0.86))
    worst_ax = fig.add_axes((0.74, 0.06, 0.24, 0.86))  # room for the names on its left
    scored = [s for s in scores if s.accuracy is not None]
    colors = [WORST_COLOR if i < worst else OTHER_COLOR for i in range(len(scored))]
    all_ax.bar(range(len(scored)), [s.accuracy or 0.0 for s in scored], color=colors, width=0.9)
    all_ax.set_title(f"test accuracy per class, worst to best ({len(scored)} classes)")
    all_ax.set_ylim(0, 1.02)
    all_ax.set_xticks([])
    all_ax.grid(axis="y", alpha=0.3)
    named = list(reversed(scored[:worst]))  # worst at the top
    worst_ax.barh(range(len(named)), [s.accuracy or 0.0 for s in named], color=WORST_COLOR)
    worst_ax.set_yticks(
        range(len(named)), [f"{_short(s.label)} ({s.correct}/{s.total})" for s in named]
    )
    worst_ax.set_xlim(0, 1)
    worst_ax.set_title(f"the {len(named)} worst classes")
    worst_ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def objective(
    trials: Sequence[dict[str, Any]],
    parameters: dict[str, dict[str, Any]],
    metric: str,
    best: str | None,
) -> bytes:
    """The objective against each tuned hyperparameter, one panel each; the best trial (by
    name) in green. Log x for logarithmic ranges, categories in their listed order."""
    width, _ = objective_px(len(parameters))
    fig = _figure(objective_px(len(parameters)))
    axes = fig.subplots(1, max(1, len(parameters)), squeeze=False)[0]
    fig.subplots_adjust(left=70 / width, right=1 - 20 / width, bottom=0.13, top=0.93, wspace=0.3)
    scored = [t for t in trials if t.get("objective") is not None]
    for ax, (name, spec) in zip(axes, parameters.items(), strict=False):
        xs: list[Any] = []
        ys: list[float] = []
        colors: list[str] = []
        for trial in scored:
            value = trial["hyperparameters"].get(name)
            if value is None:
                continue
            xs.append(value if spec["kind"] == "categorical" else float(value))
            ys.append(float(trial["objective"]))
            colors.append("green" if trial["name"] == best else OTHER_COLOR)
        if spec["kind"] == "categorical":
            order = [str(v) for v in spec.get("values", [])]
            positions = [order.index(str(x)) if str(x) in order else len(order) for x in xs]
            ax.set_xticks(range(len(order)), order)
            xs = positions
        elif spec.get("scale") == "Logarithmic":
            ax.set_xscale("log")
        ax.scatter(xs, ys, c=colors, s=40)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    return _png(fig)
