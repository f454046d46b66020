"""Shared by the Keras course scripts: time stamps of the first training step and of each epoch, and the result.

The scripts print `BENCH {json}` as the last line, the format `scripts/bench_speed.py` reads (the same as
`scripts/plain_torch.py`): `first_step`, `epochs` ([start, end, CPU seconds] per epoch, validation included), `val_acc`,
`test_acc`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import keras


class Stamps(keras.callbacks.Callback):
    """Wall-clock stamps: first training batch, each epoch's start and end (Keras validates before epoch end)."""

    def __init__(self) -> None:
        super().__init__()
        self.first_step: float | None = None
        self.epochs: list[list[float]] = []
        self.val_acc: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append([time.time(), float("nan"), time.process_time()])

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.first_step is None:
            self.first_step = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs[-1][1] = time.time()
        self.epochs[-1][2] = time.process_time() - self.epochs[-1][2]  # CPU seconds of all the process's threads
        logs = logs or {}
        self.val_acc.append(float(logs.get("val_accuracy", float("nan"))))
        print(f"epoch {epoch + 1}: {self.epochs[-1][1] - self.epochs[-1][0]:.2f}s val_acc={self.val_acc[-1]:.4f}")


def arguments(description: str, batch_size: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--data-dir", default=os.environ.get("CNN_ZOO_DATA_DIR", "data"))
    parser.add_argument("--seed", type=int, default=42)
    return parser


def report(stamps: Stamps, test_acc: float) -> None:
    result = {"first_step": stamps.first_step, "epochs": stamps.epochs, "val_acc": stamps.val_acc}
    print("BENCH " + json.dumps({**result, "test_acc": float(test_acc)}), flush=True)
