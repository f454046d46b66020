"""Benchmark: LeNet and the course's small CNN on the full real MNIST, through the normal train pipeline.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_mnist.py [--epochs 10] [--models lenet mnist_cnn]

Prints a markdown table (epochs, seconds per epoch, test accuracy) and writes it with the raw figures to
<out>/mnist.{md,json}. Targets: LeNet >= 99.0%, mnist_cnn >= 98.9% within 10 epochs on CPU.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from cnn_zoo.benchmark import markdown_table, run_experiment, write_report

EXPERIMENTS = {"lenet": "mnist_lenet", "mnist_cnn": "mnist_cnn"}
TARGETS = {"lenet": 0.990, "mnist_cnn": 0.989}


def run(model: str, epochs: int, out: Path) -> dict:
    run_dir = out / f"{model}_{datetime.now():%Y%m%d_%H%M%S}"
    overrides = [f"experiment={EXPERIMENTS[model]}", f"trainer.max_epochs={epochs}", "trainer.accelerator=cpu"]
    metrics, timer = run_experiment(overrides, run_dir, verbose=True)
    return {
        "model": model,
        "epochs": len(timer.durations),
        "s/epoch": round(timer.mean, 1),
        "test acc": metrics["test/acc"],
        "target": TARGETS[model],
        "met": "yes" if metrics["test/acc"] >= TARGETS[model] else "no",
        "run": str(run_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    args = parser.parse_args()
    rows = [run(model, args.epochs, args.out) for model in args.models]
    table = markdown_table(rows, ["model", "epochs", "s/epoch", "test acc", "target", "met"])
    write_report(args.out, "mnist", "MNIST benchmark", table, rows)


if __name__ == "__main__":
    main()
