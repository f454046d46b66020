"""Figures and highlights: feature-map grids, heatmap overlays, highlighted words, attributions over a series.

Plain matplotlib `Figure`s saved through the Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import Tensor

if TYPE_CHECKING:  # not imported at run time: the training callbacks use this module, and captum costs 0.06 s
    from cnn_zoo.interpretation.activations import FeatureMaps

DPI = 110


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def activation_grid(maps: FeatureMaps, path: Path, max_maps: int = 64, title: str = "") -> Path:
    """One layer's feature maps: a grid of `channels` small images (2-D maps) or a channels x length image (1-D)."""
    values = maps.maps.numpy()
    head = f"{maps.layer}: output {shape_text(maps.shape)}" + (f" ({title})" if title else "")
    if values.ndim == 1 or values.ndim == 2:
        values = values.reshape(values.shape[0], -1)
        size = (min(12.0, 3 + values.shape[1] / 25), min(8.0, 1.5 + values.shape[0] / 16))
        fig = Figure(figsize=size, layout="constrained")
        ax = fig.add_subplot()
        image = ax.imshow(values, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xlabel("position")
        ax.set_ylabel("channel")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_title(head, fontsize=9)
        return save(fig, path)
    shown = values[:max_maps]
    columns = min(len(shown), 8 if len(shown) <= 32 else 16)
    rows = math.ceil(len(shown) / columns)
    fig = Figure(figsize=(0.9 * columns + 0.3, 0.9 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < len(shown):
            ax.imshow(shown[index], cmap="viridis", interpolation="nearest")  # each map on its own scale
            ax.set_title(str(index), fontsize=5, pad=1)
    more = f", first {len(shown)} of {len(values)} maps" if len(shown) < len(values) else f", {len(values)} maps"
    fig.suptitle(head + more, fontsize=9)
    return save(fig, path)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """`heatmap` (H, W) in [0, 1] blended over `image` (H, W, C) in [0, 1] with the jet colour map."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[:, :, :3]
    return np.clip((1 - alpha) * rgb + alpha * colours, 0, 1)


def heatmap_figure(image: np.ndarray, heatmap: np.ndarray, path: Path, title: str, label: str = "Grad-CAM") -> Path:
    """The input, the heatmap over it, and the heatmap alone, side by side."""
    fig = Figure(figsize=(7.5, 2.9), layout="constrained")
    axes = fig.subplots(1, 3)
    gray = image.shape[2] == 1
    axes[0].imshow(image[:, :, 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=8)
    axes[1].imshow(overlay(image, heatmap))
    axes[1].set_title(f"{label} over the input", fontsize=8)
    shown = axes[2].imshow(heatmap, cmap="jet", vmin=0, vmax=max(float(heatmap.max()), 1e-12))
    axes[2].set_title(label, fontsize=8)
    fig.colorbar(shown, ax=axes[2], shrink=0.8)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def token_html(tokens: Sequence[str], values: Tensor | np.ndarray, title: str) -> str:
    """The review's words on a background coloured by their attribution: red for the class, blue against it."""
    values = np.asarray(values, dtype=np.float64)
    scale = float(np.abs(values).max()) or 1.0
    spans = []
    for token, value in zip(tokens, values, strict=True):
        if not token:
            continue  # padding
        strength = abs(value) / scale
        colour = f"rgba(220,40,40,{strength:.2f})" if value >= 0 else f"rgba(40,90,220,{strength:.2f})"
        style = f"background:{colour};padding:1px 2px"
        spans.append(f'<span title="{value:+.4f}" style="{style}">{html.escape(token)}</span>')
    words = " ".join(spans)
    return f'<div class="tokens"><p><b>{html.escape(title)}</b></p><p style="line-height:1.9">{words}</p></div>'


def token_bars(tokens: Sequence[str], values: Tensor | np.ndarray, path: Path, title: str, top: int = 20) -> Path:
    """The `top` tokens by absolute attribution as horizontal bars (position: word)."""
    values = np.asarray(values, dtype=np.float64)
    positions = [i for i, t in enumerate(tokens) if t]
    ranked = sorted(positions, key=lambda i: -abs(values[i]))[:top][::-1]
    fig = Figure(figsize=(6.0, 0.8 + 0.22 * max(len(ranked), 1)), layout="constrained")
    ax = fig.add_subplot()
    colours = ["#d62828" if values[i] >= 0 else "#2856dc" for i in ranked]
    ax.barh(range(len(ranked)), [values[i] for i in ranked], color=colours)
    ax.set_yticks(range(len(ranked)), [f"{tokens[i]} @{i}" for i in ranked], fontsize=7)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("attribution (red: for the class, blue: against)", fontsize=8)
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def series_figure(
    series: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    path: Path,
    title: str,
    top: int = 5,
    step_names: Sequence[str] | None = None,
) -> Path:
    """A window's features over time with the attribution per time step behind them, and the attribution per
    feature and time step as a map. `values` is (features, time), or (time,) for a per-step map (Grad-CAM).
    `step_names` names the positions when they are not time steps (`mode=row`: the columns)."""
    values = np.asarray(values, dtype=np.float64)
    features, steps = series.shape
    per_step = values if values.ndim == 1 else values.sum(axis=0)
    order = np.argsort(-np.abs(values).sum(axis=1))[:top] if values.ndim == 2 else np.arange(min(top, features))
    fig = Figure(figsize=(8.0, 5.2 if values.ndim == 2 else 3.2), layout="constrained")
    axes = fig.subplots(2 if values.ndim == 2 else 1, 1, squeeze=False)[:, 0]
    ax = axes[0]
    time = np.arange(steps)
    scale = float(np.abs(per_step).max()) or 1.0
    for t in time:
        colour = "#d62828" if per_step[t] >= 0 else "#2856dc"
        ax.axvspan(t - 0.5, t + 0.5, color=colour, alpha=0.45 * abs(per_step[t]) / scale, linewidth=0)
    for f in order:
        ax.plot(time, series[f], marker=".", linewidth=1, label=str(names[f]) if f < len(names) else f"f{f}")
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylabel("standardised value")
    ax.legend(fontsize=7, loc="upper left", ncol=min(len(order), 5))
    ax.set_title(title + " (background: attribution per time step, red for the class)", fontsize=9)
    if values.ndim == 2:
        limit = float(np.abs(values).max()) or 1.0
        shown = axes[1].imshow(values, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        axes[1].set_yticks(range(features), [str(n) for n in names][:features], fontsize=6)
        axes[1].set_xlabel("time step")
        axes[1].set_title("attribution per feature and time step", fontsize=9)
        fig.colorbar(shown, ax=axes[1], shrink=0.8)
    else:
        ax.set_xlabel("time step")
    if step_names is not None and len(step_names) == steps:
        for axis in axes:
            axis.set_xticks(range(steps), [str(n) for n in step_names], rotation=45, ha="right", fontsize=7)
        axes[-1].set_xlabel("feature (column)")
        ax.set_title(ax.get_title().replace("time step", "feature"), fontsize=9)
    return save(fig, path)


def mistakes_grid(
    images: np.ndarray, heatmaps: np.ndarray | None, labels: Sequence[str], path: Path | None, title: str, nrow: int = 8
) -> Figure:
    """Top-loss images (N, H, W, C) in [0, 1], with their Grad-CAM (N, H, W) over them when given, one caption each."""
    count = len(images)
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(1.6 * columns + 0.3, 1.8 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index >= count:
            continue
        image = images[index]
        if heatmaps is not None:
            ax.imshow(overlay(image, heatmaps[index], alpha=0.4))
        elif image.shape[2] == 1:
            ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(image)
        ax.set_title(labels[index], fontsize=6, pad=2)
    fig.suptitle(title, fontsize=8)
    if path is not None:
        save(fig, path)
    return fig


def series_grid(
    series: np.ndarray,
    labels: Sequence[str],
    names: Sequence[str],
    path: Path | None,
    title: str,
    step_names: Sequence[str] | None = None,
    labelled_step: int | None = None,
    nrow: int = 4,
    top: int = 3,
) -> Figure:
    """Top-loss sequence inputs (N, features, steps), one small plot each: the `top` most varying features over
    the window with the step that labels it shaded (`labelled_step`, e.g. -1 for the last), or, in `mode=row`
    (`step_names`: one channel whose positions are the columns), the row's standardised values per column."""
    count = len(series)
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(3.3 * columns + 0.3, 2.4 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= count:
            ax.set_axis_off()
            continue
        x = np.asarray(series[index], dtype=np.float64)
        steps = x.shape[1]
        if step_names is not None and x.shape[0] == 1 and len(step_names) == steps:
            ax.bar(range(steps), x[0], color=["#d62828" if v >= 0 else "#2856dc" for v in x[0]])
            ax.set_xticks(range(steps), [str(n) for n in step_names], rotation=60, ha="right", fontsize=5)
            ax.axhline(0, color="black", linewidth=0.5)
        else:
            for f in np.argsort(-x.std(axis=1))[:top]:
                ax.plot(range(steps), x[f], linewidth=1, label=str(names[f]) if f < len(names) else f"f{f}")
            if labelled_step is not None:
                at = labelled_step % steps
                ax.axvspan(at - 0.5, at + 0.5, color="#d62828", alpha=0.25, linewidth=0)
            ax.set_xlabel("time step", fontsize=6)
            ax.legend(fontsize=5, loc="upper left")
        ax.tick_params(labelsize=5)
        ax.set_title(labels[index], fontsize=6, pad=2)
    suffix = " (shaded: the step that labels the window)" if labelled_step is not None and step_names is None else ""
    fig.suptitle(title + suffix, fontsize=8)
    if path is not None:
        save(fig, path)
    return fig
