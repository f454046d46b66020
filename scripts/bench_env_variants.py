"""Per-epoch seconds of one training command under several process environments, alternating runs.

Why: a process-wide setting (an allocator option, huge pages, OpenMP's waiting) is kept only where it gains at
least 5% per epoch; this measures that side by side, each variant in its own process, rounds alternating and
every other round reversed, so the machine's drift over minutes falls on every variant alike.

    python scripts/bench_env_variants.py --epochs 3 --rounds 3 \
        --variant defaults= --variant no_thp=THP_MEM_ALLOC_ENABLE=0 -- experiment=mnist_cnn

A variant is `name=VAR=value,VAR2=value` (nothing after the first `=`: the environment as it is). The epoch
seconds are read from the run's one log line per epoch (`epoch 2/3 12.34s cpu=...`); the first epoch (warm-up)
is left out of the median.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) ([0-9.]+)s cpu=([0-9.]+)s")


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition("=")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    return name, env


def epoch_seconds(log: str) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each epoch: CPU time is what a loaded machine's scheduler blurs least."""
    return [(float(match.group(3)), float(match.group(4))) for match in EPOCH_LINE.finditer(log)]


def run_once(overrides: list[str], env: dict[str, str], epochs: int, workdir: Path) -> list[tuple[float, float]]:
    command = [
        sys.executable,
        "-m",
        "cnn_zoo.train",
        f"trainer.max_epochs={epochs}",
        "test=false",
        "callbacks.early_stopping=null",
        "logger=none",
        f"hydra.run.dir={workdir}",
        *overrides,
    ]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return epoch_seconds((workdir / "train.log").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True, help="name=VAR=value,... (repeatable)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the training command")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    steady: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.rounds):
            order = variants if round_number % 2 == 0 else variants[::-1]
            for name, env in order:
                seconds = run_once(args.overrides, env, args.epochs, Path(tmp) / f"{name}-{round_number}")
                steady[name].extend(seconds[1:])
                shown = " ".join(f"{wall:.2f}/{cpu:.2f}" for wall, cpu in seconds)
                print(f"round {round_number + 1} {name} (wall/CPU s per epoch): {shown}", flush=True)
    wall0 = statistics.median(w for w, _ in steady[variants[0][0]])
    cpu0 = statistics.median(c for _, c in steady[variants[0][0]])
    print("\n| variant | environment | median wall s/epoch (epochs 2+) | ratio | median CPU s/epoch | ratio |")
    print("|---|---|---|---|---|---|")
    for name, env in variants:
        wall = statistics.median(w for w, _ in steady[name])
        cpu = statistics.median(c for _, c in steady[name])
        shown = ", ".join(f"{k}={v}" for k, v in env.items()) or "as it is"
        print(f"| {name} | {shown} | {wall:.2f} | {wall / wall0:.3f} | {cpu:.2f} | {cpu / cpu0:.3f} |")


if __name__ == "__main__":
    main()
