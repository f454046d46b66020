"""Reproduce the course's experiments on the real data and write the results table.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/reproduce.py [--only mnist_cnn imdb_conv1d] [--max-epochs N ...] \
        [--budget-min M ...] [--merge] [key=value ...]

Each experiment runs through the normal train pipeline (`experiment=<name>`); the table — experiment, the
notes' figure, ours (test accuracy of the best checkpoint, and with test-time augmentation where the experiment
has it), the project's target and whether it was met, the best validation accuracy, epochs, seconds per epoch,
machine, date — goes to <out>/reproduction.md and .json. An experiment that cannot run here (e.g. ImageNet
weights absent) is listed with the one-line reason instead of a figure. `--budget-min` stops each experiment
cleanly (its best checkpoint is still tested) when another epoch would pass the budget, so the epochs column says
how far it got; `--max-epochs` and `--budget-min` take one value for all, or one per experiment of `--only`.
`--merge` keeps the rows of experiments not re-run from an earlier table. Hydra overrides after the options go to
every experiment (and into the table), e.g. `data.image_size=150` or `trainer.precision=bf16-mixed`.

The single-dataset benchmarks of earlier versions are runs of this script:
    MNIST:           --only mnist_lenet mnist_cnn
    cats and dogs:   --only catsdogs_scratch catsdogs_aug --budget-min 60   (tta=hflip is in both experiments)
    IMDB:            --only imdb_conv1d [model.net.dropout=0.5 ...]
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from bench_common import machine, markdown_table, names_and_overrides, run_experiment
from cnn_zoo.runtime.errors import CnnZooError

# experiment -> what the course notes report for it
NOTES = {
    "mnist_lenet": "- (target 99.0% test)",
    "mnist_cnn": "98.89% test",
    "catsdogs_scratch": "72.6% test",
    "catsdogs_aug": "75% test (85% val after 200 epochs, heavier regularisation)",
    "catsdogs_vgg16_frozen": "~90% val (ImageNet VGG16 features)",
    "catsdogs_vgg16_finetune": "97.6% test (ImageNet VGG16)",
    "catsdogs_resnet50_frozen": "- (ImageNet ResNet50)",
    "catsdogs_resnet50_finetune": "- (ImageNet ResNet50)",
    "imdb_conv1d": "- (target 88% test)",
    "telemetry_conv1d": "91.9% val (their own telemetry)",
}
# experiment -> the project's target test accuracy (README), where it has one
TARGETS = {
    "mnist_lenet": 0.990,
    "mnist_cnn": 0.989,
    "catsdogs_scratch": 0.75,
    "catsdogs_aug": 0.85,
    "imdb_conv1d": 0.88,
}
COLUMNS = ["experiment", "notes", "ours", "target", "met", "best val acc", "test F1", "epochs", "s/epoch", "machine",
           "date"]  # fmt: skip


def reproduce(name: str, out: Path, max_epochs: int | None, budget_min: float | None, extra: list[str]) -> dict:
    overrides = [f"experiment={name}", *([f"trainer.max_epochs={max_epochs}"] if max_epochs else []), *extra]
    row = {
        "experiment": name + "".join(f" `{o}`" for o in extra),
        "notes": NOTES[name],
        "date": f"{datetime.now():%Y-%m-%d}",
        "machine": machine(),
    }
    try:
        budget_s = budget_min * 60 if budget_min else None
        metrics, timer = run_experiment(overrides, out / name, budget_s=budget_s, verbose=True)
    except CnnZooError as err:
        return {**row, "ours": f"not run: {str(err).split(' (')[0]}"}  # the reason's first clause
    tta_note = f" (TTA {metrics['test/acc_tta']:.2%})" if "test/acc_tta" in metrics else ""
    target = TARGETS.get(name)
    return {
        **row,
        "ours": f"{metrics['test/acc']:.2%} test{tta_note}",
        **({"target": f"{target:.1%}", "met": "yes" if metrics["test/acc"] >= target else "no"} if target else {}),
        **({"best val acc": round(metrics["val/acc_best"], 4)} if "val/acc_best" in metrics else {}),
        "test F1": round(metrics["test/f1"], 4),
        "epochs": len(timer.durations),
        "s/epoch": round(timer.mean, 1),
    }


def per_experiment(parser: argparse.ArgumentParser, option: str, values: list, count: int) -> list:
    """One value for every experiment, or one each."""
    if len(values) == 1:
        return values * count
    if len(values) != count:
        parser.error(f"{option} takes one value, or one per experiment ({count}), got {len(values)}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(NOTES), help=f"experiments, of: {' '.join(NOTES)}")
    parser.add_argument(
        "--max-epochs", type=int, nargs="+", default=[None], help="epochs: one for all, or one per experiment"
    )
    parser.add_argument(
        "--budget-min", type=float, nargs="+", default=[None], help="wall-clock minutes: one for all, or one each"
    )
    parser.add_argument("--merge", action="store_true", help="keep the other experiments' rows of an earlier run")
    parser.add_argument("--out", type=Path, default=Path("outputs/reproduction"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every experiment (shown in the table)")
    args = parser.parse_args()
    args.only, args.overrides = names_and_overrides(parser, args.only, args.overrides, list(NOTES))
    epochs = per_experiment(parser, "--max-epochs", args.max_epochs, len(args.only))
    budgets = per_experiment(parser, "--budget-min", args.budget_min, len(args.only))
    earlier = args.out / "reproduction.json"
    kept = json.loads(earlier.read_text()) if args.merge and earlier.is_file() else []
    rows_by_name = {row["experiment"].split(" ")[0]: row for row in kept}
    for name, max_epochs, budget_min in zip(args.only, epochs, budgets, strict=True):
        rows_by_name[name] = reproduce(name, args.out, max_epochs, budget_min, args.overrides)
        rows = [rows_by_name[n] for n in NOTES if n in rows_by_name]
        table = markdown_table(rows, COLUMNS)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "reproduction.md").write_text(table + "\n")  # rewritten after each: a partial run keeps its rows
        (args.out / "reproduction.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
