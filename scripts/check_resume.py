"""Kill a real-MNIST run with SIGKILL in its third epoch, resume it in its folder, compare with the run never killed.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/check_resume.py [--kill-delay 2] [-- extra overrides]

Runs `experiment=mnist_cnn trainer.max_epochs=4 trainer.limit_train_batches=150 trainer.deterministic=true` through
the real entry point: uninterrupted; beside it the same run, SIGKILLed from outside `--kill-delay` seconds after
its last.ckpt records the second epoch (so during the third), and resumed with `resume=<run folder>`. Prints the
table (test/acc, test/loss, wall time) and writes it to <out>/check_resume.{md,json}; exits 1 unless the resumed
run's test metrics and final weights equal the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

from bench_common import markdown_table, write_report

RUN = [
    "experiment=mnist_cnn",
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=150",
    "trainer.deterministic=true",
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "+trainer.enable_progress_bar=false",
]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnn_zoo.train", *args]


def saved_epoch(last: Path) -> int | None:
    """The epoch of `last.ckpt` (written atomically, so never read half-written), or None before the first."""
    if not last.is_file():
        return None
    return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"])


def run_killed(run_dir: Path, extra: list[str], kill_delay: float, log: Path) -> float:
    """Start the run, SIGKILL it `kill_delay` s into its third epoch; returns the wall time until the kill."""
    began = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command(*RUN, *extra, f"hydra.run.dir={run_dir}"), stdout=out, stderr=out)
        last = run_dir / "checkpoints" / "last.ckpt"
        while (saved_epoch(last) or 0) < 1:  # the epoch-end checkpoint of the second epoch (epoch index 1)
            if process.poll() is not None:
                raise SystemExit(f"the run ended before its third epoch (status {process.returncode}); see {log}")
            time.sleep(0.2)
        time.sleep(kill_delay)
        if process.poll() is not None:
            raise SystemExit(f"the run ended before it could be killed; lower --kill-delay ({log})")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    return time.perf_counter() - began


def start(args: list[str], log: Path) -> tuple[subprocess.Popen, float]:
    with log.open("w") as out:
        return subprocess.Popen(command(*args), stdout=out, stderr=out), time.perf_counter()


def finish(process: subprocess.Popen, began: float, log: Path) -> float:
    if process.wait() != 0:
        raise SystemExit(f"{' '.join(process.args)} failed with status {process.returncode}; see {log}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-delay", type=float, default=2.0, help="seconds into the third epoch")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    folder = args.out / f"check_resume_{datetime.now():%Y%m%d_%H%M%S}"
    whole, killed = folder / "uninterrupted", folder / "killed"
    folder.mkdir(parents=True)
    # the uninterrupted run goes on beside the one to be killed (two processes: less wall time on a multi-core CPU)
    uninterrupted = start([*RUN, *args.overrides, f"hydra.run.dir={whole}"], folder / "uninterrupted.log")
    kill_s = run_killed(killed, args.overrides, args.kill_delay, folder / "killed.log")
    killed_at = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    resumed = start([f"resume={killed}"], folder / "resumed.log")
    resume_s = finish(*resumed, folder / "resumed.log")
    whole_s = finish(*uninterrupted, folder / "uninterrupted.log")

    rows = []
    for name, run, seconds in (("uninterrupted", whole, whole_s), ("killed + resumed", killed, kill_s + resume_s)):
        metrics = json.loads((run / "metrics.json").read_text())
        rows.append({"run": name, "test/acc": metrics["test/acc"], "test/loss": metrics["test/loss"],
                     "val/acc_best": metrics["val/acc_best"], "wall s": seconds})  # fmt: skip
    a = torch.load(whole / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    same_weights = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    same_metrics = all(rows[0][k] == rows[1][k] for k in ("test/acc", "test/loss", "val/acc_best"))
    table = markdown_table(rows, ["run", "test/acc", "test/loss", "val/acc_best", "wall s"])
    notes = [
        f"- killed with SIGKILL {kill_s:.1f} s after the start, {args.kill_delay} s into the third epoch; resumed "
        f"from last.ckpt of epoch {killed_at['epoch']} (step {killed_at['global_step']}) in {resume_s:.1f} s",
        f"- test/acc {rows[0]['test/acc']!r} vs {rows[1]['test/acc']!r}; test/loss {rows[0]['test/loss']!r} vs "
        f"{rows[1]['test/loss']!r}",
        f"- identical metrics: {'yes' if same_metrics else 'NO'}; identical final weights: "
        f"{'yes' if same_weights else 'NO'}",
        f"- command: `{' '.join(RUN + args.overrides)}`; runs in {folder}",
    ]
    write_report(args.out, "check_resume", "Kill and resume on the real MNIST", table, rows, notes)
    raise SystemExit(0 if same_metrics and same_weights else 1)


if __name__ == "__main__":
    main()
