"""Start-up: launch to cnn_zoo's first training step, beside the import floor of its dependencies, same sitting.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_startup.py --keras-python ../venv-tf/bin/python

Every way is its own process, alternating (every other round reversed), for `--rounds` rounds:

- `zoo`: `python -m cnn_zoo.train experiment=mnist_cnn` with its defaults (callbacks, TensorBoard, checkpoints),
  one epoch of two batches: launch to train.log's "first training step" line (the start-up bench_speed.py
  reports; the issue's target is <= 4 s);
- `deps`: `import torch, lightning.pytorch, hydra` and one torch optimizer built, nothing else: the floor of any
  process training with the chosen dependencies (Lightning imports torchmetrics, torchmetrics imports
  torchvision's models and scipy.signal, and an optimizer's first use imports torch._dynamo);
- `torch`: `import torch` and one optimizer built: the floor of any PyTorch training process;
- `keras`: `import keras` with TensorFlow (`--keras-python`): the import floor of the course's Keras code;
- `help`: `python -m cnn_zoo.train --help`, the whole process (target <= 2 s).

Reports the median and every run's seconds, the share of the cores' time the hypervisor stole meanwhile, and
cnn_zoo's own part of its start-up (`zoo` less `deps`: config, data, network, Trainer, callbacks). Writes
`<out>/startup.{md,json}`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench_common import (
    ProcessRun,
    machine,
    markdown_table,
    reported,
    run_process,
    way_order,
    write_report,
    zoo_stamps,
)
from bench_speed import child_env, keras_interpreter

OPTIMIZER = "torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).step()"
# each floor prints when its work is done, as the training children do (`benchmark.reported`): the interpreter's
# exit (0.3-0.5 s of freeing torch) is no part of a start-up
READY = 'import json, time; print("BENCH " + json.dumps({"first_step": time.time(), "epochs": [], "test_acc": None}))'
FLOOR_CODE = {
    "deps": f"import torch, lightning.pytorch, hydra; {OPTIMIZER}; {READY}",
    "torch": f"import torch; {OPTIMIZER}; {READY}",
    "keras": f"import keras; keras.ops.zeros(1); {READY}",
}
WHAT = {
    "zoo": "cnn_zoo, launch to first training step (MNIST, mnist_cnn)",
    "deps": "import torch + lightning + hydra, one optimizer step",
    "torch": "import torch, one optimizer step",
    "keras": "import keras (TensorFlow)",
    "help": "python -m cnn_zoo.train --help",
}
WAYS = tuple(WHAT)


def command(way: str, folder: Path, keras_python: str | None) -> list[str]:
    if way == "zoo":
        return [
            sys.executable, "-m", "cnn_zoo.train", "experiment=mnist_cnn", "trainer.max_epochs=1",
            "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false", f"hydra.run.dir={folder}",
        ]  # fmt: skip
    if way == "help":
        return [sys.executable, "-m", "cnn_zoo.train", "--help"]
    return [keras_python if way == "keras" else sys.executable, "-c", FLOOR_CODE[way]]


def seconds(way: str, run: ProcessRun) -> float | None:
    """Launch to the stamp the process reports (the zoo's first training step, a floor's imports done); `--help`:
    the whole process, which is what its user waits for."""
    if run.returncode != 0:
        return None
    return run.whole_s if way == "help" else run.startup_s


def summary_row(way: str, runs: list[ProcessRun]) -> dict[str, Any]:
    measured = [(s, run) for run in runs if (s := seconds(way, run)) is not None]
    shares = [run.steal_share(run.launched, run.launched + s) for s, run in measured]
    return {
        "way": way,
        "what": WHAT[way],
        "runs": f"{len(measured)}/{len(runs)}",
        "median s": statistics.median(s for s, _ in measured) if measured else None,
        "per run": " ".join(f"{s:.2f}" for s, _ in measured),
        "best s": min((s for s, _ in measured), default=None),
        "steal %": " ".join(f"{100 * share:.0f}" for share in shares if share is not None) or None,
    }


def own_part(rows: dict[str, dict[str, Any]]) -> str:
    zoo, deps = rows.get("zoo", {}).get("median s"), rows.get("deps", {}).get("median s")
    if zoo is None or deps is None:
        return "cnn_zoo's own part: not measured (needs the zoo and deps ways)"
    return f"cnn_zoo's own part of its start-up (zoo - deps medians): {zoo - deps:.2f} s of {zoo:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=WAYS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keras-python", help="an interpreter with tensorflow (default: this one, if it has it)")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    args = parser.parse_args()
    args.out = args.out.resolve()
    keras_python, keras_note = keras_interpreter(args.keras_python)
    ways = [w for w in args.ways if w != "keras" or keras_python]
    runs: dict[str, list[ProcessRun]] = {way: [] for way in ways}
    raw: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for way in way_order(ways, round_):
            folder = args.out / "startup_runs" / f"{way}_{round_}"
            shutil.rmtree(folder, ignore_errors=True)  # a run folder from an earlier benchmark: train refuses it
            run = run_process(command(way, folder, keras_python), folder / "output.log", child_env())
            if way == "zoo":
                run = zoo_stamps(run, folder / "train.log", folder / "metrics.json")
            elif way != "help":
                run = reported(run, (folder / "output.log").read_text())
            runs[way].append(run)
            raw.append({"way": way, "round": round_, **asdict(run)})
            measured = seconds(way, run)
            print(f"{way} round {round_}: rc={run.returncode} s={measured if measured is None else round(measured, 2)}",
                  flush=True)  # fmt: skip
    rows = {way: summary_row(way, way_runs) for way, way_runs in runs.items()}
    notes = [
        f"Machine: {machine()}. {keras_note}. {args.rounds} rounds, ways alternating {' '.join(ways)}, reversed "
        "every other round. steal %: the share of the cores' time the hypervisor took during each measured span.",
        own_part(rows),
    ]
    shown = [{k: f"{v:.2f}" if isinstance(v, float) else v for k, v in row.items()} for row in rows.values()]
    table = markdown_table(shown, list(shown[0]))
    write_report(args.out, "startup", "Start-up: cnn_zoo beside its dependencies' import floor", table,
                 {"summary": list(rows.values()), "notes": notes, "runs": raw}, notes)  # fmt: skip


if __name__ == "__main__":
    main()
