"""Shared by the benchmark scripts: epoch timing, the machine's description, markdown tables."""

from __future__ import annotations

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
    """Wall time of each training epoch (validation excluded)."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.durations.append(time.perf_counter() - self.start)

    @property
    def mean(self) -> float:
        return sum(self.durations) / len(self.durations) if self.durations else float("nan")


def machine() -> str:
    """What the figures were measured on: CPU count, torch threads, accelerator."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (
        f"{device}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), "
        f"{platform.machine()}, torch {torch.__version__}"
    )


def run_experiment(
    overrides: Sequence[str], run_dir: Path, extra_callbacks: Sequence[L.Callback] = ()
) -> tuple[dict[str, float], EpochTimer]:
    """Train through the normal pipeline (quiet, on the configured accelerator) and time its epochs."""
    cfg = compose_train_config(
        [*overrides, "callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false"], run_dir
    )
    timer = EpochTimer()
    return train(cfg, extra_callbacks=[timer, *extra_callbacks]), timer


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def stamp() -> str:
    return f"{datetime.now():%Y-%m-%d %H:%M}, {machine()}"
