"""Speed: cnn_zoo's train pipeline beside a plain PyTorch loop and the course notes' Keras code, same runs.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_speed.py --keras-python ../venv-tf/bin/python
    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_speed.py --models mnist_cnn --epochs 2 --rounds 3
    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_speed.py --ways zoo zoo_fast plain -- trainer.accelerator=gpu

For each course model (LeNet and the small CNN on MNIST, the cats/dogs small CNN at 180x180 batch 32 on the
2,000 training images, the notes' Conv1D on IMDB) every way runs as its own process, alternating A B C C B A
(`--same-order`: A B C A B C) for `--rounds` rounds, on the same data, network, optimizer, batch size and epochs:

- `zoo`: `python -m cnn_zoo.train` with its defaults (callbacks, TensorBoard, checkpoints, test of the best
  checkpoint; `fast=auto`); `zoo_32`: the same with `fast=false` (float32); `zoo_fast`: `fast=true`.
- `plain`: scripts/plain_torch.py, the same datamodule, network and optimizer in a bare float32 loop;
  `plain_fast`: the same loop under bf16 autocast (`--bf16`), the reference for the fast path's overhead.
- `keras`: scripts/keras_course/*.py, the notes' Keras code, with `--keras-python` (default: this interpreter
  when it can import tensorflow; skipped with a note otherwise; `pip install -e '.[bench]'`).

Reported medians over the rounds: seconds per epoch (each process's own epoch stamps, validation included;
the median of the epochs after the first; and the best run's, since on a shared machine others' load only ever
adds time) and the process's CPU seconds per epoch (all its threads: less blurred
by other processes on a shared machine; DataLoader worker processes not included), start-up (launch to the
first training step), the whole process,
training samples per second, peak memory (the child's max RSS) and CPU seconds, test accuracy; and the ratios
the targets are about. Writes `<out>/speed.{md,json}` (every run's raw figures in the json). Extra Hydra
overrides after `--` apply to the cnn_zoo and plain runs (e.g. `trainer.accelerator=gpu`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import statistics
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
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
from cnn_zoo.runtime import performance
from cnn_zoo.runtime.performance import fast_enabled

ROOT = Path(__file__).resolve().parents[1]
KERAS_DIR = ROOT / "scripts" / "keras_course"


@dataclass(frozen=True)
class Course:
    """One course run: cnn_zoo overrides, the Keras script and its arguments, training samples per epoch."""

    zoo: tuple[str, ...]
    keras: tuple[str, ...]
    train_samples: int
    unit: str


COURSES = {
    "lenet": Course(("experiment=mnist_lenet",), ("mnist.py", "--model", "lenet"), 55000, "images"),
    "mnist_cnn": Course(("experiment=mnist_cnn",), ("mnist.py", "--model", "mnist_cnn"), 55000, "images"),
    "catsdogs": Course(
        ("data=catsdogs", "model=small_cnn", "optimizer=rmsprop", "augmentation=none", "tta=none"),
        ("catsdogs.py",),
        2000,
        "images",
    ),
    "conv1d_text": Course(("data=imdb", "model=conv1d_text", "optimizer=adam"), ("imdb.py",), 20000, "reviews"),
}
WAYS = ("zoo", "zoo_32", "zoo_fast", "plain", "plain_fast", "keras")
ZOO_SWITCH = {"zoo": [], "zoo_32": ["fast=false"], "zoo_fast": ["fast=true"]}
# An epoch counts as quiet when the hypervisor took at most this share of the machine's core time during it. On
# this 2-core VM it took 0-26% of a run's (2026-12-02): with 20% gone the same float32 mnist_cnn epoch took 21.8 s,
# with 0.7% 12.3 s; two threads meeting at every kernel's barrier lose more than the share itself.
QUIET_STEAL = 0.02


def keras_interpreter(requested: str | None) -> tuple[str | None, str]:
    if requested:
        return requested, f"Keras: {requested}"
    if importlib.util.find_spec("tensorflow") is not None:
        return sys.executable, "Keras: this interpreter"
    return None, "Keras skipped: tensorflow is not importable here (pip install -e '.[bench]' or --keras-python)"


def child_env() -> dict[str, str]:
    """This checkout's sources first on the path, so the children run the code being measured; without this
    process's own OpenMP choice, so that each run makes its own, as a user's launch does (how long OpenMP spins
    depends on the run's DataLoader workers). Settings of yours stay, and then hold for every run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env.pop(performance.CHOICE_VARIABLE, None)
    for name in performance.openmp_choice.settings:
        env.pop(name, None)
    return env


def run_once(model: str, way: str, args: argparse.Namespace, folder: Path, keras_python: str | None) -> ProcessRun:
    course = COURSES[model]
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "output.log"
    if way.startswith("zoo"):
        command = [
            sys.executable, "-m", "cnn_zoo.train", *course.zoo, *ZOO_SWITCH[way],
            f"trainer.max_epochs={args.epochs}", f"hydra.run.dir={folder}", *args.overrides,
        ]  # fmt: skip
        run = run_process(command, log, child_env())
        return zoo_stamps(run, folder / "train.log", folder / "metrics.json")
    if way.startswith("plain"):
        command = [sys.executable, str(ROOT / "scripts" / "plain_torch.py"), f"--epochs={args.epochs}"]
        command += [*(["--bf16"] if way == "plain_fast" else []), *course.zoo, *args.overrides]
    else:
        command = [keras_python, str(KERAS_DIR / course.keras[0]), *course.keras[1:], f"--epochs={args.epochs}"]
        command += ["--data-dir", os.environ.get("CNN_ZOO_DATA_DIR", "data")]
        if model == "conv1d_text":
            command += ["--cache-dir", str(args.out / "cache" / "keras_imdb")]
    run = run_process(command, log, child_env())
    return reported(run, log.read_text())


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(model: str, way: str, runs: list[ProcessRun], quiet_steal: float = QUIET_STEAL) -> dict[str, Any]:
    ok = [r for r in runs if r.returncode == 0 and r.epochs]
    epoch = median([r.steady_epoch_s for r in ok])
    row: dict[str, Any] = {"model": model, "way": way, "runs": f"{len(ok)}/{len(runs)}"}
    row["s/epoch"] = epoch
    row["s/epoch per run"] = " ".join(f"{r.steady_epoch_s:.1f}" for r in ok)
    row["best s/epoch"] = min((r.steady_epoch_s for r in ok if r.steady_epoch_s), default=None)
    quiet = [q for r in ok if (q := r.quiet_epoch_s(quiet_steal)) is not None]
    row["quiet s/epoch"] = median(quiet)
    row["quiet runs"] = len(quiet)
    shares = [share for r in ok for start, end, *_ in r.epochs[1:] if (share := r.steal_share(start, end)) is not None]
    row["steal % (steady epochs)"] = " ".join(f"{100 * share:.0f}" for share in shares) or None
    row["CPU s/epoch"] = median([r.steady_epoch_cpu_s for r in ok])
    row["start-up s"] = median([r.startup_s for r in ok])
    row["whole s"] = median([r.whole_s for r in ok])
    row[f"{COURSES[model].unit}/s"] = round(COURSES[model].train_samples / epoch) if epoch else None
    row["peak MB"] = median([r.max_rss_mb for r in ok])
    row["CPU s"] = median([r.cpu_s for r in ok])
    row["sys s"] = median([r.system_s for r in ok])
    faults = median([r.minor_faults for r in ok])
    row["k faults"] = round(faults / 1000) if faults is not None else None
    row["steal s"] = median([r.steal_s for r in ok])
    row["test acc"] = median([r.test_acc for r in ok])
    return row


def ratio(rows: dict[str, dict[str, Any]], a: str, b: str, column: str) -> str:
    x, y = rows.get(a, {}).get(column), rows.get(b, {}).get(column)
    return f"{x / y:.2f}" if x and y else "-"


def points(rows: dict[str, dict[str, Any]], a: str, b: str) -> str:
    """The difference of two ways' test accuracies in percentage points: a speed-up's cost, if any."""
    x, y = rows.get(a, {}).get("test acc"), rows.get(b, {}).get("test acc")
    return f"{100 * (x - y):+.2f}" if x is not None and y is not None else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(COURSES), choices=list(COURSES))
    parser.add_argument("--ways", nargs="+", default=["zoo", "plain", "keras"], choices=WAYS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--same-order", action="store_true", help="every round in --ways order (default: every other one reversed)"
    )
    parser.add_argument("--keras-python", help="an interpreter with tensorflow (default: this one, if it has it)")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    parser.add_argument("--keep-runs", action="store_true", help="keep every run folder (default: the last round's)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the cnn_zoo and plain runs")
    parser.add_argument(
        "--tables-from", type=Path, nargs="+", help="only rebuild the tables from earlier speed.json files' runs"
    )
    args = parser.parse_args()
    args.out = args.out.resolve()
    if args.tables_from:
        return rebuild(args.tables_from, args.out)
    keras_python, keras_note = keras_interpreter(args.keras_python)
    ways = [w for w in args.ways if w != "keras" or keras_python]
    accelerator = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("trainer.accelerator=")), "auto")
    fast = fast_enabled("auto", accelerator)
    notes = [
        f"Machine: {machine()}. Load average at the start: {os.getloadavg()[0]:.1f}. {performance.openmp_choice}.",
        f"`fast=auto` here: {'bf16 autocast + channels_last' if fast else 'float32 (no bf16 units detected)'}.",
        keras_note,
        f"{args.rounds} rounds x {args.epochs} epochs, ways alternating {' '.join(ways)}"
        f"{'' if args.same_order else ', reversed every other round'}; overrides: "
        f"{' '.join(args.overrides) or 'none'}. s/epoch: median over rounds of each run's median epoch after "
        "the first (validation included); start-up: launch to first training step. quiet: the same over the "
        f"steady epochs with at most {QUIET_STEAL:.0%} of the cores' time stolen by the hypervisor.",
    ]
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    raw: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    for model in args.models:
        runs: dict[str, list[ProcessRun]] = {way: [] for way in ways}
        for round_ in range(args.rounds):
            for way in way_order(ways, round_, counterbalance=not args.same_order):
                folder = args.out / "speed_runs" / stamp / f"{model}_{way}_{round_}"
                run = run_once(model, way, args, folder, keras_python)
                runs[way].append(run)
                raw.append({"model": model, "way": way, "round": round_, "folder": str(folder), **asdict(run)})
                epoch = f"{run.steady_epoch_s:.1f}" if run.steady_epoch_s else "-"
                print(f"{model} {way} round {round_}: rc={run.returncode} s/epoch={epoch} whole={run.whole_s:.1f}s "
                      f"test_acc={run.test_acc}", flush=True)  # fmt: skip
                if not args.keep_runs and round_ < args.rounds - 1 and run.returncode == 0:
                    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
            rows, model_ratios = table_rows(model, runs, fast)  # after every round: an interrupted run keeps its data
            write_tables(args.out, summary + rows, [*ratios, model_ratios], raw, notes)
        summary += rows
        ratios.append(model_ratios)


def table_rows(model: str, runs: dict[str, list[ProcessRun]], fast: bool) -> tuple[list[dict], dict[str, Any]]:
    rows = {way: summarise(model, way, way_runs) for way, way_runs in runs.items()}
    float32 = "zoo_32" if "zoo_32" in rows else ("zoo" if not fast else "")  # the defaults are float32 here
    fast_way = "zoo_fast" if "zoo_fast" in rows else ("zoo" if fast else "")  # the defaults are the fast path here
    zoo = "zoo"
    ratios = {
        "model": model,
        "zoo/keras s/epoch (target <= 1.0)": ratio(rows, zoo, "keras", "s/epoch"),
        "zoo/plain s/epoch": ratio(rows, zoo, "plain", "s/epoch"),
        "float32 zoo/plain s/epoch (target <= 1.05)": ratio(rows, float32, "plain", "s/epoch"),
        "the same, best runs": ratio(rows, float32, "plain", "best s/epoch"),
        "the same, quiet epochs": ratio(rows, float32, "plain", "quiet s/epoch"),
        "zoo/keras CPU s/epoch": ratio(rows, zoo, "keras", "CPU s/epoch"),
        "zoo/plain CPU s/epoch": ratio(rows, zoo, "plain", "CPU s/epoch"),
        "zoo/keras best runs": ratio(rows, zoo, "keras", "best s/epoch"),
        "zoo/keras quiet epochs": ratio(rows, zoo, "keras", "quiet s/epoch"),
        "keras/zoo_fast s/epoch (target >= 1.5)": ratio(rows, "keras", fast_way, "s/epoch"),
        "the same, best runs ": ratio(rows, "keras", fast_way, "best s/epoch"),
        "the same, quiet epochs ": ratio(rows, "keras", fast_way, "quiet s/epoch"),
        "zoo_fast/plain_fast s/epoch": ratio(rows, fast_way, "plain_fast", "s/epoch"),
        "zoo_fast - zoo_32 test acc (points)": points(rows, fast_way, float32),
        "zoo/keras whole (target <= 1.1, MNIST)": ratio(rows, zoo, "keras", "whole s"),
        "zoo start-up s (target <= 4, MNIST)": rows.get(zoo, {}).get("start-up s"),
    }
    return list(rows.values()), ratios


def rebuild(sources: list[Path], out: Path) -> None:
    """The tables again from the raw runs of earlier speed.json files (after a change of the summary, or to join
    benchmarks run separately, e.g. more rounds of the quick models than of the cats/dogs one)."""
    saved: dict[str, list] = {"runs": [], "notes": []}
    for source in sources:
        content = json.loads(source.read_text())
        saved["runs"] += content["runs"]
        saved["notes"] += [f"{source.parent.name}: {note}" for note in content.get("notes", [])]
    by_model: dict[str, dict[str, list[ProcessRun]]] = {}
    fields = {f.name for f in dataclasses.fields(ProcessRun)}
    for raw in saved["runs"]:
        run = ProcessRun(**{k: v for k, v in raw.items() if k in fields})
        by_model.setdefault(raw["model"], {}).setdefault(raw["way"], []).append(run)
    summary, ratios = [], []
    for model, runs in by_model.items():
        rows, model_ratios = table_rows(model, runs, fast_enabled("auto", "auto"))
        summary += rows
        ratios.append(model_ratios)
    write_tables(out, summary, ratios, saved["runs"], saved["notes"])


def write_tables(out: Path, summary: list, ratios: list, raw: list, notes: list[str]) -> None:
    """Rewritten after every model, so an interrupted benchmark keeps what it measured."""
    columns = ["model", "way", "runs", "s/epoch", "s/epoch per run", "best s/epoch", "quiet s/epoch",
               "quiet runs", "steal % (steady epochs)", "CPU s/epoch", "start-up s",
               "whole s", "images/s", "reviews/s", "peak MB", "CPU s", "sys s", "k faults", "steal s",
               "test acc"]  # fmt: skip
    table = markdown_table(summary, columns) + "\n\n" + markdown_table(ratios, list(ratios[0]))
    content = {"summary": summary, "ratios": ratios, "notes": notes, "runs": raw}
    write_report(out, "speed", "Speed: cnn_zoo vs a plain PyTorch loop vs Keras", table, content, notes)


if __name__ == "__main__":
    main()
