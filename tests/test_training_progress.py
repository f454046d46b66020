"""What a run prints (`cnn_zoo.callbacks.training_progress`): a line per epoch off a terminal, a bar on one."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from cnn_zoo.callbacks.training_progress import EpochLog, epoch_line, progress_bar
from scripts.bench_common import run_process, zoo_stamps


def test_epoch_line_names_the_epoch_its_duration_and_epoch_values() -> None:
    metrics = {"train/loss_step": 9.0, "train/loss_epoch": torch.tensor(0.25), "val/acc": 0.9861, "test/acc": 1.0}
    assert epoch_line(2, 10, 12.345, 20.1, metrics) == "epoch 2/10 12.35s cpu=20.10s train/loss=0.2500 val/acc=0.9861"


def test_an_epochs_line_waits_for_the_modules_epoch_end_and_survives_a_crash(caplog) -> None:
    """Lightning runs the module's on_train_epoch_end (the training metrics) after the callbacks': the line comes
    at the next epoch's start, at the end of training, or when training fails."""
    metrics: dict[str, float] = {"val/acc": 0.5}
    trainer = SimpleNamespace(is_global_zero=True, sanity_checking=False, current_epoch=0, max_epochs=3,
                              callback_metrics=metrics)  # fmt: skip
    epoch_log = EpochLog()

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]

    with caplog.at_level(logging.INFO, logger="cnn_zoo.callbacks.training_progress"):
        epoch_log.on_train_epoch_end(trainer, None)
        assert lines() == []
        metrics["train/acc"] = 0.25  # what the module logs after the callbacks' hook
        epoch_log.on_train_epoch_start(trainer, None)
        trainer.current_epoch = 1
        epoch_log.on_train_epoch_end(trainer, None)
        epoch_log.on_exception(trainer, None, RuntimeError("disk full"))
        epoch_log.on_train_end(trainer, None)  # nothing pending any more: no third line
    assert [line.split()[:2] for line in lines()] == [["epoch", "1/3"], ["epoch", "2/3"]]
    assert all("train/acc=0.2500" in line and "val/acc=0.5000" in line for line in lines())


def test_progress_bar_is_disabled_off_a_terminal_unless_forced() -> None:
    assert not sys.stdout.isatty()  # pytest captures stdout
    assert not progress_bar().is_enabled
    assert progress_bar(force=True).is_enabled and progress_bar(force=True).refresh_rate == 4


def test_a_run_off_a_terminal_logs_one_line_per_epoch_that_the_bench_reads(mnist_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(mnist_root)}
    args = [f"hydra.run.dir={run_dir}", "data.download=false", "data.val_size=60", "trainer.max_epochs=2"]
    log = tmp_path / "output.log"
    run = run_process([sys.executable, "-m", "cnn_zoo.train", *args], log, env)
    assert run.returncode == 0, log.read_text()[-3000:]
    lines = (run_dir / "train.log").read_text().splitlines()
    epochs = [line for line in lines if "][cnn_zoo.callbacks.training_progress][INFO] - epoch " in line]
    assert [line.split(" - ")[1].split()[:2] for line in epochs] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert all("train/loss=" in line and "train/acc=" in line and "val/acc=" in line for line in epochs)
    assert "it/s" not in log.read_text() and "Trainable params" in log.read_text()  # a summary, no progress bar
    assert any("OpenMP waiting: " in line for line in lines)  # how the threads wait, and why, is in the log
    assert any("denormal floats: flushed to zero" in line for line in lines)
    zoo_stamps(run, run_dir / "train.log", run_dir / "metrics.json")
    assert len(run.epochs) == 2 and all(end > start and cpu > 0 for start, end, cpu in run.epochs)
    assert run.steady_epoch_cpu_s == run.epochs[1][2] and run.steady_epoch_s == run.epochs[1][1] - run.epochs[1][0]
    assert run.launched < run.first_step < run.epochs[0][1] < run.epochs[1][1] <= run.ended
    assert run.test_acc == json.loads((run_dir / "metrics.json").read_text())["test/acc"]
    assert run.max_rss_mb > 50 and run.cpu_s > 0
