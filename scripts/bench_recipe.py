"""Benchmark the training switches: a recipe on the cats/dogs experiments, and torch.compile against eager.

    # the recipe (label smoothing + EMA + warmup; mixup where augmentation is on) beside the experiments' figures
    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_recipe.py recipe [--epochs 100 30] [--budget-min 600]
    # ... and each experiment without it in the same sitting, e.g. at another seed
    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_recipe.py recipe --only catsdogs_scratch --baseline -- seed=1
    # compile=true against eager, alternating runs, each in a fresh process with an empty compile cache
    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_recipe.py compile [--rounds 2] [--epochs 3]
    # a smoke run of either: --epochs 1 -- trainer.limit_train_batches=3 ... (Hydra overrides after `--`)

`recipe` trains each experiment through the normal pipeline with `tta=hflip` (plain and TTA test accuracy) and the
recipe's overrides (with `--baseline`, also without them: the same precision, seed and data), and reports test
accuracy, epochs and seconds per epoch beside the experiment's figure without them (catsdogs_aug 87.7% at 100
epochs, catsdogs_scratch 77.8% at 30, bf16). `compile` runs each experiment eager, compiled, eager, compiled...
(`--rounds` pairs), each run in its own process so that every compiled run compiles from nothing, and reports the
first epoch (compiling included) and the steady-state seconds per epoch (the median of the later epochs). Reports go
to outputs/benchmarks/recipe.{md,json} and compile.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench_common import markdown_table, run_experiment, write_report

# the experiments' own results without the recipe (their config comments): test accuracy, epochs, TTA
BASELINES = {"catsdogs_aug": (0.877, 100, 0.878), "catsdogs_scratch": (0.778, 30, 0.809)}
# Per experiment, since they differ in how much regularisation they already have: catsdogs_scratch has no
# augmentation and over-fits from the third epoch (label smoothing and the average against it; mixing under-fits);
# catsdogs_aug has flip/rotate/zoom already, so mixup on half the batches, no cutmix (it can cut the animal out).
SPEED = ["trainer.precision=bf16-mixed", "model.channels_last=true"]  # as the baselines were measured
COMMON = ["model.loss.label_smoothing=0.1", *SPEED]
RECIPES = {
    "catsdogs_aug": [
        "augmentation.mixup_alpha=0.2",
        "augmentation.mixup_prob=0.5",
        "callbacks.ema.decay=0.999",
        "callbacks.ema.update_starting_at_step=315",  # after the 5 warmup epochs of 63 steps
        "scheduler.warmup_epochs=5",
        *COMMON,
    ],
    # Tries 1-3 (docs/benchmarks/2026-12-07-recipe-amd-epyc-avx512bf16.md) were below the baseline: EMA 0.998 lagged
    # eight epochs behind (and before the EMA fix validated the initial weights), lighter mixing was early-stopped
    # at its first plateau. This one (try 4, 2026-12-08): try 1's mixing with a short average (0.99, about 1.6
    # epochs) and the whole cosine schedule (no early stopping).
    "catsdogs_scratch": [
        "augmentation.mixup_alpha=0.2",
        "augmentation.cutmix_alpha=1.0",
        "augmentation.mixup_prob=0.8",
        "callbacks.early_stopping=null",
        "callbacks.ema.decay=0.99",
        "callbacks.ema.update_starting_at_step=126",  # after the 2 warmup epochs of 63 steps
        "scheduler.warmup_epochs=2",
        *COMMON,
    ],
}
COMPILE_EXPERIMENTS = ("mnist_cnn", "catsdogs_scratch")  # the course's MNIST CNN, the cats/dogs small CNN
RESULT = "BENCH_RECIPE "


def limited(overrides: list[str]) -> bool:
    """A smoke run (`trainer.limit_*_batches`): its accuracy says nothing about the recipe."""
    return any(o.startswith(("trainer.limit_", "+trainer.limit_")) for o in overrides)


def recipe_row(experiment: str, epochs: int, budget_s: float, out: Path, extra: list[str], bare: bool) -> dict:
    """One run of `experiment` with its recipe, or without it (`bare`: the baseline, measured in the same sitting)."""
    name = "without the recipe" if bare else "recipe"
    run_dir = out / "recipe_runs" / f"{experiment}_{'bare' if bare else 'recipe'}_{datetime.now():%Y%m%d_%H%M%S}"
    overrides = [f"experiment={experiment}", f"trainer.max_epochs={epochs}", "tta=hflip", "logger=csv"]
    started = time.perf_counter()
    metrics, timer = run_experiment(
        [*overrides, *(SPEED if bare else RECIPES[experiment]), *extra], run_dir, budget_s=budget_s, verbose=True
    )
    baseline, baseline_epochs, baseline_tta = BASELINES[experiment]
    accuracy = metrics.get("test/acc") or 0.0
    return {
        "experiment": experiment,
        "run": name,
        "epochs (max)": f"{len(timer.durations)} ({epochs})",
        "s/epoch": timer.mean,
        "test acc": metrics.get("test/acc"),
        "test acc TTA": metrics.get("test/acc_tta"),
        "best val acc": metrics.get("val/acc_best"),
        "the experiment's figure": f"{baseline:.3f} / TTA {baseline_tta:.3f} at {baseline_epochs} epochs",
        "above": "n/a" if bare or limited(extra) else ("yes" if accuracy > baseline else "no"),
        "total min": (time.perf_counter() - started) / 60,
        "folder": str(run_dir),
    }


def recipe(args: argparse.Namespace) -> None:
    experiments = args.only or list(BASELINES)
    epochs = args.epochs or [BASELINES[e][1] for e in experiments]
    epochs = epochs * len(experiments) if len(epochs) == 1 else epochs
    rows = [
        recipe_row(experiment, count, args.budget_min * 60, args.out, args.overrides, bare)
        for experiment, count in zip(experiments, epochs, strict=True)
        for bare in ((True, False) if args.baseline else (False,))
    ]
    columns = ["experiment", "run", "epochs (max)", "s/epoch", "test acc", "test acc TTA", "best val acc"]
    columns += ["the experiment's figure", "above"]
    notes = [
        *(f"recipe for {e}: {' '.join(RECIPES[e])}" for e in experiments),
        f"extra overrides: {' '.join(args.overrides) or 'none'}",
    ]
    write_report(args.out, "recipe", "Training-switch recipe on cats/dogs", markdown_table(rows, columns), rows, notes)


def one_run(args: argparse.Namespace) -> None:
    """A child process: one timed run, its epoch durations printed as one JSON line."""
    overrides = [f"experiment={args.experiment}", f"trainer.max_epochs={args.epochs[0]}", "logger=none", "test=false"]
    overrides += ["callbacks.early_stopping=null", f"compile={'true' if args.compiled else 'false'}", *args.overrides]
    run_dir = Path(tempfile.mkdtemp(prefix="bench_compile_"))
    _, timer = run_experiment(overrides, run_dir)
    print(RESULT + json.dumps({"durations": timer.durations}), flush=True)


def timed_child(experiment: str, compiled: bool, epochs: int, overrides: list[str]) -> list[float]:
    command = [sys.executable, __file__, "one", "--experiment", experiment, "--epochs", str(epochs)]
    command += ["--compiled"] if compiled else []
    with tempfile.TemporaryDirectory(prefix="inductor_") as cache:  # every compiled run compiles from nothing
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        result = subprocess.run([*command, "--", *overrides], capture_output=True, text=True, env=env)
    line = next((x for x in result.stdout.splitlines() if x.startswith(RESULT)), None)
    if result.returncode != 0 or line is None:
        raise SystemExit(f"{experiment} compiled={compiled} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return json.loads(line[len(RESULT) :])["durations"]


def compile_bench(args: argparse.Namespace) -> None:
    epochs = (args.epochs or [3])[0]
    rows, raw = [], []
    for experiment in COMPILE_EXPERIMENTS:
        runs: dict[bool, list[list[float]]] = {False: [], True: []}
        for round_index in range(args.rounds):
            for compiled in (False, True) if round_index % 2 == 0 else (True, False):  # alternate which goes first
                durations = timed_child(experiment, compiled, epochs, args.overrides)
                runs[compiled].append(durations)
                raw.append({"experiment": experiment, "compiled": compiled, "durations": durations})
                print(f"{experiment} compile={compiled}: {[round(d, 1) for d in durations]}", flush=True)
        for compiled in (False, True):
            firsts = [d[0] for d in runs[compiled]]
            later = [x for d in runs[compiled] for x in d[1:]]
            rows.append({
                "experiment": experiment,
                "compile": compiled,
                "runs": len(runs[compiled]),
                "first epoch s": statistics.median(firsts),
                "steady s/epoch": statistics.median(later) if later else float("nan"),
            })  # fmt: skip
        eager, compiled_row = rows[-2], rows[-1]
        compiled_row["compile time s"] = compiled_row["first epoch s"] - eager["first epoch s"]
        compiled_row["speed-up"] = (
            f"{eager['steady s/epoch'] / compiled_row['steady s/epoch']:.2f}x" if epochs > 1 else "n/a (1 epoch)"
        )
    columns = ["experiment", "compile", "runs", "first epoch s", "steady s/epoch", "compile time s", "speed-up"]
    notes = [f"{epochs} epochs a run, alternating eager and compiled; extra overrides: {' '.join(args.overrides)}"]
    write_report(args.out, "compile", "torch.compile against eager", markdown_table(rows, columns), raw, notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["recipe", "compile", "one"])
    parser.add_argument("--epochs", nargs="+", type=int, default=None, help="recipe: one per experiment")
    parser.add_argument("--only", nargs="+", choices=list(BASELINES), help="recipe: these experiments only")
    parser.add_argument("--budget-min", type=float, default=600.0, help="recipe: minutes per experiment")
    parser.add_argument("--baseline", action="store_true", help="recipe: also each experiment without the recipe")
    parser.add_argument("--rounds", type=int, default=2, help="compile: eager/compiled pairs per experiment")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()  # the Hydra overrides (after `--`) for every run
    unknown = [a for a in rest if a.startswith("-") and a != "--"]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [a for a in rest if a != "--"]
    {"recipe": recipe, "compile": compile_bench, "one": one_run}[args.part](args)


if __name__ == "__main__":
    main()
