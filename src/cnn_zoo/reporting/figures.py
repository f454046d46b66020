"""The run and sweep pages' figures: matplotlib `Figure`s (Agg canvas, no pyplot state) as PNG data URIs.

Embedding the PNGs keeps `report.html` one file that opens from the file system, offline, wherever it is copied.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Points = list[tuple[int, float]]
DPI = 100
LABELS = {"acc": "accuracy", "f1": "F1", "auroc": "AUROC"}


def data_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def png_uri(content: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(content).decode("ascii")


def plot_pair(ax, train: Points, val: Points, what: str) -> None:
    """Training and validation of one quantity on the same axes; markers, so one epoch still shows."""
    if train:
        ax.plot(*zip(*train, strict=True), "o--", color="tab:blue", alpha=0.8, label=f"training {what}")
    if val:
        ax.plot(*zip(*val, strict=True), "s-", color="tab:orange", label=f"validation {what}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(what)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def curves_figure(
    series: Mapping[str, Points],
    metric: str,
    best_epoch: int | None,
    monitor: str | None,
) -> Figure | None:
    """Loss, `metric` (accuracy or the monitored one) and the learning rate per epoch; the best epoch marked.

    `series` maps TensorBoard tags (`train/loss_epoch`, `val/loss`, `val/acc`, `lr-Adam`...) to (epoch, value)."""
    lr_tags = sorted(t for t in series if t.startswith("lr-"))
    panels = [("loss", "train/loss_epoch", "val/loss"), (metric, f"train/{metric}_epoch", f"val/{metric}")]
    panels = [p for p in panels if series.get(p[1]) or series.get(p[2])]
    if not panels and not lr_tags:
        return None
    count = len(panels) + (1 if lr_tags else 0)
    fig = Figure(figsize=(4.6 * count, 3.6), layout="constrained")
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax, (what, train_tag, val_tag) in zip(axes, panels, strict=False):
        what = LABELS.get(what, what)
        plot_pair(ax, series.get(train_tag, []), series.get(val_tag, []), what)
        ax.set_title(f"training and validation {what}", fontsize=10)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", linestyle=":", linewidth=1.5, label=f"best epoch ({best_epoch})")
            if monitor == val_tag:
                value = dict(series.get(val_tag, [])).get(best_epoch)
                if value is not None:
                    ax.plot([best_epoch], [value], "*", color="tab:green", markersize=14)
        ax.legend(fontsize=8)
    if lr_tags:
        ax = axes[-1]
        for tag in lr_tags:
            ax.plot(*zip(*series[tag], strict=True), "o-", label=tag.removeprefix("lr-"))
        ax.set_title("learning rate", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        values = [v for tag in lr_tags for _, v in series[tag]]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def confusion_figure(matrix: Sequence[Sequence[int]], names: Sequence[str], title: str) -> Figure:
    """Counts with rows = true class, columns = predicted; each cell shaded by its share of the true class."""
    size = len(names)
    side = max(3.4, 0.4 * size + 1.8)
    fig = Figure(figsize=(side, side), layout="constrained")
    ax = fig.add_subplot()
    totals = [max(sum(row), 1) for row in matrix]
    shares = [[cell / total for cell in row] for row, total in zip(matrix, totals, strict=True)]
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, row in enumerate(matrix):
        for j, cell in enumerate(row):
            colour = "white" if shares[i][j] > 0.6 else "black"
            ax.text(j, i, str(cell), ha="center", va="center", color=colour, fontsize=8 if size > 10 else 10)
    ax.set_xticks(
        range(size), [str(n) for n in names], rotation=45 if size > 4 else 0, ha="right" if size > 4 else "center"
    )
    ax.set_yticks(range(size), [str(n) for n in names])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.75, label="share of the true class")
    return fig


def overlay_figure(curves: Mapping[str, Points], what: str, best: str | None) -> Figure | None:
    """Every job's validation curve of `what` on one chart (the sweep page); the best job drawn thicker."""
    drawn = {name: points for name, points in curves.items() if points}
    if not drawn:
        return None
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for name, points in drawn.items():
        wide = name == best
        ax.plot(*zip(*points, strict=True), "o-", linewidth=2.8 if wide else 1.2, markersize=4, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(what)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"validation {what.removeprefix('val/')} of every job", fontsize=10)
    ax.grid(alpha=0.3)
    if len(drawn) <= 20:
        ax.legend(fontsize=7, loc="best")
    return fig


def history_figure(numbers: Sequence[int], values: Sequence[float], maximize: bool, metric: str) -> Figure | None:
    """Optuna's optimisation history: each completed trial's objective and the best so far."""
    if not numbers:
        return None
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(numbers, values, "o", label="trial")
    best, running = [], -math.inf if maximize else math.inf
    for value in values:
        running = max(running, value) if maximize else min(running, value)
        best.append(running)
    ax.step(numbers, best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(min(numbers) - 0.5, max(numbers) + 0.5)
    ax.set_title("optimisation history", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def importance_figure(importances: Mapping[str, float]) -> Figure | None:
    """Parameter importances (Optuna's evaluator) as horizontal bars, the most important on top."""
    if not importances:
        return None
    names = list(importances)[::-1]
    fig = Figure(figsize=(6.5, 0.9 + 0.4 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(range(len(names)), [importances[n] for n in names], color="tab:blue")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("importance for the objective")
    ax.set_title("parameter importances", fontsize=10)
    return fig
