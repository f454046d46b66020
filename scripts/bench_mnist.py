"""Benchmark: LeNet and the course's small CNN on the full real MNIST, through the normal train pipeline.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_mnist.py [--epochs 10] [--models lenet mnist_cnn]

Prints a markdown table (epochs, seconds per epoch, test accuracy) and writes it with the raw figures to
outputs/benchmarks/mnist.{md,json}. Targets: LeNet >= 99.0%, mnist_cnn >= 98.9% within 10 epochs on CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime
from pathlib import Path

import lightning as L
import torch

from cnn_zoo.config import compose_train_config
from cnn_zoo.train import train

EXPERIMENTS = {"lenet": "mnist_lenet", "mnist_cnn": "mnist_cnn"}
TARGETS = {"lenet": 0.990, "mnist_cnn": 0.989}


class EpochTimer(L.Callback):
    """Wall time of each training epoch (validation excluded)."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.durations.append(time.perf_counter() - self.start)


def run(model: str, epochs: int, out: Path) -> dict:
    run_dir = out / f"{model}_{datetime.now():%Y%m%d_%H%M%S}"
    cfg = compose_train_config(
        [
            f"experiment={EXPERIMENTS[model]}",
            f"trainer.max_epochs={epochs}",
            "trainer.accelerator=cpu",
            "callbacks.rich_progress_bar=null",
            "+trainer.enable_progress_bar=false",
        ],
        run_dir,
    )
    timer = EpochTimer()
    metrics = train(cfg, extra_callbacks=[timer])
    return {
        "model": model,
        "epochs": len(timer.durations),
        "sec_per_epoch": sum(timer.durations) / max(1, len(timer.durations)),
        "test_acc": metrics["test/acc"],
        "val_acc_best": metrics["val/acc_best"],
        "target": TARGETS[model],
        "run_dir": str(run_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    args = parser.parse_args()
    rows = [run(model, args.epochs, args.out) for model in args.models]
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    lines = [
        f"MNIST benchmark ({datetime.now():%Y-%m-%d}, {machine})",
        "",
        "| model | epochs | s/epoch | test acc | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "yes" if r["test_acc"] >= r["target"] else "no"
        lines.append(
            f"| {r['model']} | {r['epochs']} | {r['sec_per_epoch']:.1f} | {r['test_acc']:.4f} | "
            f"{r['target']:.3f} | {met} |"
        )
    report = "\n".join(lines)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mnist.md").write_text(report + "\n")
    (args.out / "mnist.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
