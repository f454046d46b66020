"""Shared by the benchmark scripts: epoch timing, the machine's description, markdown tables."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cnn_zoo.config import compose_train_config
from cnn_zoo.train import train


class EpochTimer(L.Callback):
    """Wall time of each training epoch (its validation included); optionally prints progress and stops the run
    cleanly (the best checkpoint is still tested) once `budget_s` seconds would be exceeded by another epoch, so a
    benchmark ends on time on a busy CPU."""

    def __init__(self, budget_s: float | None = None, verbose: bool = False) -> None:
        self.budget_s = budget_s
        self.verbose = verbose
        self.durations: list[float] = []
        self.began = time.perf_counter()
        self.start = self.began

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.durations.append(time.perf_counter() - self.start)
        if self.verbose:
            metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            print(f"epoch {trainer.current_epoch}: {self.durations[-1]:.0f}s {metrics}", flush=True)
        spent = time.perf_counter() - self.began
        if self.budget_s is not None and spent + self.mean > self.budget_s:
            trainer.should_stop = True
            print(f"time budget: stopping after epoch {len(self.durations)} ({spent / 60:.1f} min spent)", flush=True)

    @property
    def mean(self) -> float:
        return sum(self.durations) / len(self.durations) if self.durations else float("nan")


def names_and_overrides(
    parser: argparse.ArgumentParser, names: list[str], overrides: list[str], known: Sequence[str]
) -> tuple[list[str], list[str]]:
    """`--only a b key=value`: argparse gives the overrides to the name list; hand them back, check the names."""
    unknown = sorted({n for n in names if "=" not in n} - set(known))
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [n for n in names if "=" not in n], [n for n in names if "=" in n] + overrides


def machine() -> str:
    """What the figures were measured on: CPU count, torch threads, accelerator."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (
        f"{device}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), "
        f"{platform.machine()}, torch {torch.__version__}"
    )


def run_experiment(
    overrides: Sequence[str],
    run_dir: Path,
    budget_s: float | None = None,
    verbose: bool = False,
    extra_callbacks: Sequence[L.Callback] = (),
) -> tuple[dict[str, float], EpochTimer]:
    """Train through the normal pipeline (quiet, on the configured accelerator) and time its epochs."""
    cfg = compose_train_config(
        [*overrides, "callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false"], run_dir
    )
    timer = EpochTimer(budget_s, verbose)
    return train(cfg, extra_callbacks=[timer, *extra_callbacks]), timer


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any, column: str) -> str:
        if isinstance(value, float):  # durations to 0.1 s; fractions (accuracy, F1) to 4 places
            duration = column.startswith("s/") or "sec" in column or abs(value) >= 1
            return f"{value:.1f}" if duration else f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, ""), c) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def mean_over_seeds(
    rows: Sequence[dict[str, Any]], keys: Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per distinct `keys`: each metric's mean over the seeds, and the first metric seed by seed.

    A test split with a few positive samples makes one seed's score noisy: compare means, show the spread.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    summary = []
    for values, group in groups.items():
        row = dict(zip(keys, values, strict=True)) | {"seeds": len(group)}
        row |= {metric: round(sum(r[metric] for r in group) / len(group), 4) for metric in metrics}
        row[f"{metrics[0]} per seed"] = " ".join(f"{r[metrics[0]]:.3f}" for r in group)
        summary.append(row)
    return summary


def stamp() -> str:
    return f"{datetime.now():%Y-%m-%d %H:%M}, {machine()}"


def write_report(out: Path, name: str, title: str, table: str, rows: Any, notes: Sequence[str] = ()) -> str:
    """Print `<title> (<date, machine>)`, the table and notes; write them to <out>/<name>.md, the raw rows to .json."""
    text = "\n\n".join([f"{title} ({stamp()})", table, *(["\n".join(notes)] if notes else [])])
    print(text, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text + "\n")
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    return text
