"""Reproduce the course's experiments on the real data and write the results table.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/reproduce.py [--only mnist_cnn imdb_conv1d] [--max-epochs N] \
        [--budget-min M] [--merge]

Each experiment runs through the normal train pipeline (`experiment=<name>`); the table — experiment, the
notes' figure, ours (test accuracy of the best checkpoint), epochs, seconds per epoch, machine, date — goes to
<out>/reproduction.md and .json. An experiment that cannot run here (e.g. ImageNet weights absent) is listed
with the one-line reason instead of a figure. `--budget-min` stops each experiment cleanly (its best checkpoint
is still tested) when another epoch would pass the budget, so the epochs column says how far it got; `--merge`
keeps the rows of experiments not re-run from an earlier table.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from cnn_zoo.benchmark import machine, markdown_table, names_and_overrides, run_experiment
from cnn_zoo.errors import CnnZooError

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
    return {
        **row,
        "ours": f"{metrics['test/acc']:.2%} test{tta_note}",
        "test F1": round(metrics["test/f1"], 4),
        "epochs": len(timer.durations),
        "s/epoch": round(timer.mean, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(NOTES), help=f"experiments, of: {' '.join(NOTES)}")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap every experiment's epochs (smoke runs)")
    parser.add_argument("--budget-min", type=float, default=None, help="wall-clock minutes per experiment")
    parser.add_argument("--merge", action="store_true", help="keep the other experiments' rows of an earlier run")
    parser.add_argument("--out", type=Path, default=Path("outputs/reproduction"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every experiment (shown in the table)")
    args = parser.parse_args()
    args.only, args.overrides = names_and_overrides(parser, args.only, args.overrides, list(NOTES))
    earlier = args.out / "reproduction.json"
    kept = json.loads(earlier.read_text()) if args.merge and earlier.is_file() else []
    rows_by_name = {row["experiment"].split(" ")[0]: row for row in kept}
    for name in args.only:
        rows_by_name[name] = reproduce(name, args.out, args.max_epochs, args.budget_min, args.overrides)
        rows = [rows_by_name[n] for n in NOTES if n in rows_by_name]
        table = markdown_table(rows, ["experiment", "notes", "ours", "test F1", "epochs", "s/epoch", "machine", "date"])
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "reproduction.md").write_text(table + "\n")  # rewritten after each: a partial run keeps its rows
        (args.out / "reproduction.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
