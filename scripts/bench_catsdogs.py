"""Benchmark: the notes' small CNN on the real cats_and_dogs_small, from scratch and with augmentation + dropout.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_catsdogs.py \
        [--experiments catsdogs_scratch catsdogs_aug] [--epochs 30 100] [--image-size 180] [--budget-min 60]

Each experiment goes through the normal train pipeline (`experiment=<name>`), with `tta=hflip` so the test
reports plain and TTA accuracy side by side. `--budget-min` stops training (cleanly, then tests the best
checkpoint) when an experiment's share of the wall-clock budget is spent, so the script ends on time on a busy
CPU. Prints a markdown table and writes it with the raw figures to outputs/benchmarks/catsdogs.{md,json}.
Targets: scratch >= 75%, catsdogs_aug >= 85% test accuracy; TTA >= plain. The notes: 72.6% and 75%.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

from cnn_zoo.benchmark import names_and_overrides, run_experiment, write_report

TARGETS = {"catsdogs_scratch": 0.75, "catsdogs_aug": 0.85}
NOTES = {"catsdogs_scratch": 0.726, "catsdogs_aug": 0.75}


def run(experiment: str, epochs: int, image_size: int, budget_s: float, out: Path, extra: list[str]) -> dict:
    run_dir = out / f"{experiment}_{image_size}px_{datetime.now():%Y%m%d_%H%M%S}"
    started = time.perf_counter()
    overrides = [
        f"experiment={experiment}",
        f"trainer.max_epochs={epochs}",
        f"data.image_size={image_size}",
        "tta=hflip",
        "trainer.accelerator=cpu",
        "logger=csv",
        *extra,
    ]
    metrics, timer = run_experiment(overrides, run_dir, budget_s=budget_s, verbose=True)
    return {
        "experiment": experiment,
        "image_size": image_size,
        "epochs": len(timer.durations),
        "max_epochs": epochs,
        "sec_per_epoch": timer.mean,
        "total_min": (time.perf_counter() - started) / 60,
        "test_acc": metrics.get("test/acc"),
        "test_acc_tta": metrics.get("test/acc_tta"),
        "test_auroc": metrics.get("test/auroc"),
        "val_acc_best": metrics.get("val/acc_best"),
        "target": TARGETS.get(experiment),
        "notes": NOTES.get(experiment),
        "run_dir": str(run_dir),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| experiment | px | epochs (max) | s/epoch | test acc | test acc TTA (hflip) | notes | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "yes" if r["target"] and r["test_acc"] >= r["target"] else "no"
        lines.append(
            f"| {r['experiment']} | {r['image_size']} | {r['epochs']} ({r['max_epochs']}) | {r['sec_per_epoch']:.0f} "
            f"| {r['test_acc']:.4f} | {r['test_acc_tta']:.4f} | {r['notes']} | {r['target']} | {met} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=list(TARGETS))
    parser.add_argument("--epochs", nargs="+", type=int, default=[30, 100], help="max epochs, one per experiment")
    parser.add_argument("--image-size", type=int, default=180)
    parser.add_argument("--budget-min", nargs="+", type=float, default=[600.0], help="minutes, one per experiment")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every experiment")
    args = parser.parse_args()
    args.experiments, args.overrides = names_and_overrides(parser, args.experiments, args.overrides, list(TARGETS))
    epochs = args.epochs * len(args.experiments) if len(args.epochs) == 1 else args.epochs
    budgets = args.budget_min * len(args.experiments) if len(args.budget_min) == 1 else args.budget_min
    rows = []
    for experiment, max_epochs, budget in zip(args.experiments, epochs, budgets, strict=True):
        rows.append(run(experiment, max_epochs, args.image_size, budget * 60, args.out, args.overrides))
        print(table(rows), flush=True)
    write_report(args.out, "catsdogs", "cats_and_dogs_small benchmark", table(rows), rows)


if __name__ == "__main__":
    main()
