"""Shared by the benchmark scripts (not part of the cnn_zoo package): epoch timing, the machine's description,
markdown tables, child processes timed with their CPU steal."""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.runtime.performance import PROC_STAT, CpuTimes
from cnn_zoo.train import train


class EpochTimer(L.Callback):
    """Wall time of each training epoch (its validation included); optionally prints progress and stops the run
    cleanly (the best checkpoint is still tested) once `budget_s` seconds would be exceeded by another epoch, so a
    benchmark ends on time on a busy CPU."""

    def __init__(self, budget_s: float | None = None, verbose: bool = False) -> None:
        self.budget_s = budget_s
        self.verbose = verbose
        self.durations: list[float] = []
        self.began = time.perf_counter()
        self.start = self.began

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.durations.append(time.perf_counter() - self.start)
        if self.verbose:
            metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            print(f"epoch {trainer.current_epoch}: {self.durations[-1]:.0f}s {metrics}", flush=True)
        spent = time.perf_counter() - self.began
        if self.budget_s is not None and spent + self.mean > self.budget_s:
            trainer.should_stop = True
            print(f"time budget: stopping after epoch {len(self.durations)} ({spent / 60:.1f} min spent)", flush=True)

    @property
    def mean(self) -> float:
        return sum(self.durations) / len(self.durations) if self.durations else float("nan")


def names_and_overrides(
    parser: argparse.ArgumentParser, names: list[str], overrides: list[str], known: Sequence[str]
) -> tuple[list[str], list[str]]:
    """`--only a b key=value`: argparse gives the overrides to the name list; hand them back, check the names."""
    unknown = sorted({n for n in names if "=" not in n} - set(known))
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [n for n in names if "=" not in n], [n for n in names if "=" in n] + overrides


def machine() -> str:
    """What the figures were measured on: CPU count, torch threads, accelerator."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (
        f"{device}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), "
        f"{platform.machine()}, torch {torch.__version__}"
    )


def run_experiment(
    overrides: Sequence[str],
    run_dir: Path,
    budget_s: float | None = None,
    verbose: bool = False,
    extra_callbacks: Sequence[L.Callback] = (),
) -> tuple[dict[str, float], EpochTimer]:
    """Train through the normal pipeline (quiet, on the configured accelerator) and time its epochs."""
    cfg = compose_train_config(
        [*overrides, "callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false"], run_dir
    )
    timer = EpochTimer(budget_s, verbose)
    return train(cfg, extra_callbacks=[timer, *extra_callbacks]), timer


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any, column: str) -> str:
        if isinstance(value, float):  # durations to 0.1 s; fractions (accuracy, F1) to 4 places
            duration = column.startswith("s/") or "sec" in column or abs(value) >= 1
            return f"{value:.1f}" if duration else f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, ""), c) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def mean_over_seeds(
    rows: Sequence[dict[str, Any]], keys: Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per distinct `keys`: each metric's mean over the seeds, and the first metric seed by seed.

    A test split with a few positive samples makes one seed's score noisy: compare means, show the spread.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    summary = []
    for values, group in groups.items():
        row = dict(zip(keys, values, strict=True)) | {"seeds": len(group)}
        row |= {metric: round(sum(r[metric] for r in group) / len(group), 4) for metric in metrics}
        row[f"{metrics[0]} per seed"] = " ".join(f"{r[metrics[0]]:.3f}" for r in group)
        summary.append(row)
    return summary


def stamp() -> str:
    return f"{datetime.now():%Y-%m-%d %H:%M}, {machine()}"


def write_report(out: Path, name: str, title: str, table: str, rows: Any, notes: Sequence[str] = ()) -> str:
    """Print `<title> (<date, machine>)`, the table and notes; write them to <out>/<name>.md, the raw rows to .json."""
    text = "\n\n".join([f"{title} ({stamp()})", table, *(["\n".join(notes)] if notes else [])])
    print(text, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text + "\n")
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    return text


# ---------------------------------------------------------------- whole processes, timed from outside (bench_speed)
@dataclass
class ProcessRun:
    """One timed child process: wall-clock launch and exit, its own peak memory and CPU time, and what it reported.

    `first_step` and `epochs` ([start, end] per epoch) are wall-clock stamps from the process itself, so start-up
    (launch to first training step) and seconds per epoch exclude each other and the process's exit. An epoch
    may carry a third number, the process's CPU seconds in it (robust to other processes on the machine).
    """

    launched: float
    ended: float
    returncode: int
    max_rss_mb: float
    cpu_s: float
    system_s: float | None = None  # of cpu_s, the kernel's: page faults and thread wake-ups show here
    minor_faults: int | None = None
    context_switches: tuple[int, int] | None = None  # (voluntary: waits; involuntary: preempted)
    steal_s: float | None = None  # core-seconds the hypervisor gave other guests meanwhile (all cores together)
    first_step: float | None = None
    epochs: list[list[float]] = field(default_factory=list)
    test_acc: float | None = None
    steal: list[list[float]] = field(default_factory=list)  # [wall-clock time, steal core-seconds so far] samples
    cores: int | None = None  # the machine's, for the share of its time stolen

    @property
    def whole_s(self) -> float:
        return self.ended - self.launched

    @property
    def startup_s(self) -> float | None:
        return None if self.first_step is None else self.first_step - self.launched

    @property
    def epoch_s(self) -> list[float]:
        return [epoch[1] - epoch[0] for epoch in self.epochs]

    @property
    def epoch_cpu_s(self) -> list[float]:
        return [epoch[2] for epoch in self.epochs if len(epoch) > 2]

    @property
    def steady_epoch_s(self) -> float | None:
        """Median over the epochs after the first (which carries one-off warm-up), or the first alone."""
        return steady(self.epoch_s)

    @property
    def steady_epoch_cpu_s(self) -> float | None:
        return steady(self.epoch_cpu_s) if len(self.epoch_cpu_s) == len(self.epochs) else None

    def steal_share(self, start: float, end: float) -> float | None:
        """The share of the machine's core time stolen between two wall-clock stamps: from the samples taken while
        the run ran, or, for runs recorded without them, the run's average (its total over its whole time)."""
        if not self.cores or end <= start:
            return None
        if len(self.steal) >= 2:
            stolen = stolen_at(self.steal, end) - stolen_at(self.steal, start)
        elif self.steal_s is not None and self.whole_s > 0:
            stolen = self.steal_s * (end - start) / self.whole_s
        else:
            return None
        return stolen / (self.cores * (end - start))

    def quiet_epoch_s(self, max_steal_share: float) -> float | None:
        """Like `steady_epoch_s`, over the steady epochs in which at most `max_steal_share` of the cores' time was
        stolen; None when none was that quiet (or steal is unknown)."""
        steady_epochs = self.epochs[1:] if len(self.epochs) > 1 else self.epochs
        quiet = [end - start for start, end, *_ in steady_epochs if (share := self.steal_share(start, end)) is not None
                 and share <= max_steal_share]  # fmt: skip
        return statistics.median(quiet) if quiet else None


def stolen_at(samples: list[list[float]], when: float) -> float:
    """Steal core-seconds at `when`, linear between the samples around it (clamped to the first and last)."""
    times = [t for t, _ in samples]
    index = bisect.bisect_left(times, when)
    if index == 0:
        return samples[0][1]
    if index == len(samples):
        return samples[-1][1]
    (t0, s0), (t1, s1) = samples[index - 1], samples[index]
    return s0 + (s1 - s0) * (when - t0) / (t1 - t0) if t1 > t0 else s1


class StealSampler:
    """Samples the machine's stolen core-seconds every `interval_s` on a thread while a child runs (its wait
    releases the interpreter), so each epoch's share can be told from the child's own time stamps."""

    def __init__(self, stat: Path = PROC_STAT, interval_s: float = 0.5) -> None:
        self.stat, self.interval_s = stat, interval_s
        self.samples: list[list[float]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.ticks_per_s = os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        times = CpuTimes.read(self.stat)
        if times is not None:
            self.samples.append([time.time(), times.steal / self.ticks_per_s])

    def run(self) -> None:
        while not self.done.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> StealSampler:
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.sample()

    @property
    def total_s(self) -> float | None:
        return self.samples[-1][1] - self.samples[0][1] if len(self.samples) >= 2 else None

    def relative(self) -> list[list[float]]:
        """The samples from 0 at the start, rounded (the JSON keeps every run's)."""
        first = self.samples[0][1] if self.samples else 0.0
        return [[round(t, 2), round(v - first, 2)] for t, v in self.samples]


def steady(durations: list[float]) -> float | None:
    return statistics.median(durations[1:] if len(durations) > 1 else durations) if durations else None


def way_order(ways: Sequence[str], round_index: int, counterbalance: bool = True) -> list[str]:
    """The ways of one round: in the given order, or reversed in every other round (A B C, C B A, ...).

    A run can leave the machine slower or faster for the next one (caches, memory, the host's scheduling): on
    LeNet, float32 cnn_zoo against the plain loop measured 0.98x with cnn_zoo first in each round and 1.23x with the
    plain loop first. Reversing every other round gives each way each neighbour equally often.
    """
    return list(reversed(ways)) if counterbalance and round_index % 2 else list(ways)


def run_process(
    command: Sequence[str], log_file: Path, env: dict[str, str] | None = None, stat: Path = PROC_STAT
) -> ProcessRun:
    """Run `command` with its output in `log_file`; `os.wait4` gives this child's own peak RSS, CPU time, page
    faults and context switches (what tells a slow run's cause: memory, waiting, or other processes), and
    /proc/stat the time the hypervisor stole from the machine's cores meanwhile (another guest's load, which no
    process here can see or avoid: a run with much of it is slow for a reason outside it)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as out, StealSampler(stat) as steal:
        launched = time.time()
        child = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        ended = time.time()
    child.returncode = os.waitstatus_to_exitcode(status)
    return ProcessRun(
        launched,
        ended,
        child.returncode,
        usage.ru_maxrss / 1024,
        usage.ru_utime + usage.ru_stime,
        usage.ru_stime,
        usage.ru_minflt,
        (usage.ru_nvcsw, usage.ru_nivcsw),
        steal.total_s,
        steal=steal.relative(),
        cores=os.cpu_count(),
    )


def reported(run: ProcessRun, output: str) -> ProcessRun:
    """Fill in the last `BENCH {json}` line a child printed (scripts/plain_torch.py, scripts/keras_course/)."""
    lines = [line for line in output.splitlines() if line.startswith("BENCH ")]
    if lines:
        result = json.loads(lines[-1].removeprefix("BENCH "))
        run.first_step, run.epochs, run.test_acc = result["first_step"], result["epochs"], result["test_acc"]
    return run


LOG_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[cnn_zoo\.callbacks\.training_progress\]\[INFO\] - (.*)$"
)
EPOCH_LINE = re.compile(r"^epoch \d+/\d+ (\d+(?:\.\d+)?)s(?: cpu=(\d+(?:\.\d+)?)s)?")


def zoo_stamps(run: ProcessRun, train_log: Path, metrics_file: Path) -> ProcessRun:
    """Fill in a `python -m cnn_zoo.train` run from its train.log (EpochLog's lines) and metrics.json."""
    for line in train_log.read_text().splitlines() if train_log.is_file() else []:
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        message = match.group(2)
        if message.startswith("first training step") and run.first_step is None:
            run.first_step = stamp
        elif epoch := EPOCH_LINE.match(message):
            cpu = [float(epoch.group(2))] if epoch.group(2) else []
            run.epochs.append([stamp - float(epoch.group(1)), stamp, *cpu])
    if metrics_file.is_file():
        run.test_acc = json.loads(metrics_file.read_text()).get("test/acc")
    return run
