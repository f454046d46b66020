"""Progress that suits where the output goes: a rich bar on a terminal, one log line per epoch everywhere.

A log file, CI or SLURM gets nothing readable from a live progress bar, and the bar's refresh thread costs CPU
that a 2-core machine needs for training; `train.log` gets one line per epoch (losses, metrics, duration) instead.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

from cnn_zoo.callbacks.epoch_numbers import EpochProgressBar

log = logging.getLogger(__name__)


def progress_bar(refresh_rate: int = 4, leave: bool = False, force: bool = False) -> RichProgressBar:
    """Rich's bar refreshed `refresh_rate` times a second on a terminal; a disabled one elsewhere (unless `force`).

    A disabled bar, not none: Lightning would otherwise add its own tqdm bar. Lightning's default of 100 refreshes
    a second held the interpreter 14% of a 2-core MNIST epoch.
    """
    enabled = force or sys.stdout.isatty()
    return EpochProgressBar(refresh_rate=refresh_rate if enabled else 0, leave=leave)


def epoch_line(epoch: int, max_epochs: int, seconds: float, cpu_seconds: float, metrics: dict[str, Any]) -> str:
    """`epoch 2/10 12.34s cpu=20.10s train/loss=0.0512 ... val/acc=0.9861`: wall and CPU time of the process
    (all its threads; what a busy machine's scheduler does not blur), then the epoch's values without step ones."""
    epoch_values = {
        name.removesuffix("_epoch"): float(value)
        for name, value in metrics.items()
        if name.startswith(("train/", "val/")) and not name.endswith("_step")
    }
    values = " ".join(f"{name}={value:.4f}" for name, value in sorted(epoch_values.items()))
    return f"epoch {epoch}/{max_epochs} {seconds:.2f}s cpu={cpu_seconds:.2f}s {values}".rstrip()


class EpochLog(L.Callback):
    """Logs when the first training step starts and one line per finished epoch (its validation included).

    An epoch's line is written once the epoch is complete: Lightning runs the LightningModule's
    `on_train_epoch_end` (where the classifier logs the epoch's training metrics) and the checkpoint callbacks
    after this callback's, so the line comes at the next epoch's start, or at the end of training.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.first_step_logged = False
        self.finished_epoch: int | None = None  # ended, its line not yet written

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_finished_epoch(trainer)
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, index: int) -> None:
        if not self.first_step_logged and trainer.is_global_zero:
            self.first_step_logged = True
            log.info("first training step (epoch %d)", trainer.current_epoch + 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            self.finished_epoch = trainer.current_epoch + 1

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_finished_epoch(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.write_finished_epoch(trainer)

    def write_finished_epoch(self, trainer: L.Trainer) -> None:
        if self.finished_epoch is None:
            return
        seconds, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu_start
        log.info(epoch_line(self.finished_epoch, trainer.max_epochs, seconds, cpu, trainer.callback_metrics))
        self.finished_epoch = None
