"""The start-up and step-overhead benchmarks run end to end on the MNIST fixture (their figures are not checked:
timings belong in the benchmarks' reports, not in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_zoo.runtime.performance import CHOICE_VARIABLE, OPENMP_SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, arguments: list[str], data_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    launched = {k: v for k, v in os.environ.items() if k not in (*OPENMP_SETTINGS, CHOICE_VARIABLE)}  # a shell
    env = {**launched, "CNN_ZOO_DATA_DIR": str(data_dir), "CNN_ZOO_CACHE_DIR": str(cwd / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *arguments],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )  # fmt: skip


def test_the_startup_benchmark_times_cnn_zoo_to_its_first_step_and_help_as_a_whole(
    mnist_root: Path, tmp_path: Path
) -> None:
    result = run_script(
        "bench_startup.py", ["--ways", "zoo", "help", "--rounds", "1", "--out", "out"], mnist_root, tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "startup.json").read_text())
    rows = {row["way"]: row for row in report["summary"]}
    assert rows["zoo"]["runs"] == rows["help"]["runs"] == "1/1"
    zoo_run = next(run for run in report["runs"] if run["way"] == "zoo")
    # the zoo's start-up ends at its first training step, inside the process's lifetime
    assert zoo_run["launched"] < zoo_run["first_step"] < zoo_run["ended"]
    assert 0 < rows["zoo"]["median s"] < zoo_run["ended"] - zoo_run["launched"]
    assert "cnn_zoo's own part: not measured" in report["notes"][1]  # the deps way did not run
    assert (tmp_path / "out" / "startup.md").is_file()
    # the zoo makes its own OpenMP choice, as a user's launch does, instead of keeping the benchmark's
    assert "of the cores idle at start" in (tmp_path / "out" / "startup_runs" / "zoo_0" / "train.log").read_text()


@pytest.mark.parametrize("way", ["cnn_zoo", "bare Lightning"])
def test_the_step_overhead_benchmark_times_paired_blocks_of_both_loops(
    mnist_root: Path, tmp_path: Path, way: str
) -> None:
    bare = ["--bare"] if way == "bare Lightning" else []
    arguments = [*bare, "--block", "3", "--blocks", "2", "--", "experiment=mnist_cnn", "data.batch_size=4",
                 "callbacks.rich_progress_bar=null", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    result = run_script("bench_step_overhead.py", arguments, mnist_root, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    assert len(lines[f"{way} ms/step"].split(":")[1].split()) == 2  # one figure per block
    assert len(lines["plain ms/step"].split(":")[1].split()) == 2
    assert f"{way}/plain median of the 2 paired blocks" in lines["median"]


def test_the_plain_loop_trains_validates_and_tests_with_the_openmp_choice_train_makes(
    mnist_root: Path, tmp_path: Path
) -> None:
    """The reference loop of bench_speed.py: its own OpenMP choice (made after the config, as train's), its stamps."""
    arguments = ["--epochs", "2", "experiment=mnist_cnn", "data.batch_size=16", "data.val_size=60"]
    result = run_script("plain_torch.py", arguments, mnist_root, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OpenMP waiting: " in result.stdout and "torch was imported before cnn_zoo" not in result.stdout
    bench = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("BENCH "))[len("BENCH ") :])
    assert len(bench["epochs"]) == len(bench["val_acc"]) == 2
    assert bench["epochs"][0][0] <= bench["first_step"] <= bench["epochs"][0][1] <= bench["epochs"][1][0]
    assert 0.0 <= bench["test_acc"] <= 1.0


def test_reproduce_runs_the_chosen_experiments_with_their_targets_and_per_experiment_epochs(
    mnist_root: Path, tmp_path: Path
) -> None:
    """The MNIST benchmark of earlier versions is `reproduce.py --only mnist_lenet mnist_cnn`: its table has the
    targets, whether they were met, and the best validation accuracy."""
    arguments = ["--only", "mnist_lenet", "mnist_cnn", "--max-epochs", "1", "2", "--out", "out", "data.download=false",
                 "data.val_size=60", "trainer.limit_train_batches=2", "callbacks.rich_progress_bar=null",
                 "callbacks.model_summary=null", "logger=none"]  # fmt: skip
    result = run_script("reproduce.py", arguments, mnist_root, tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "reproduction.json").read_text())
    assert [row["experiment"].split()[0] for row in rows] == ["mnist_lenet", "mnist_cnn"]
    assert [row["epochs"] for row in rows] == [1, 2] and [row["target"] for row in rows] == ["99.0%", "98.9%"]
    assert all(row["met"] in ("yes", "no") and 0.0 <= row["best val acc"] <= 1.0 for row in rows)
    table = (tmp_path / "out" / "reproduction.md").read_text()
    assert table.startswith("| experiment | notes | ours | target | met | best val acc |")
    wrong = run_script("reproduce.py", ["--only", "mnist_cnn", "--max-epochs", "1", "2"], mnist_root, tmp_path)
    assert wrong.returncode == 2 and "--max-epochs takes one value, or one per experiment (1), got 2" in wrong.stderr


def test_every_script_imports_its_helpers_from_where_they_live(tmp_path: Path) -> None:
    """A script importing a module that moved (cnn_zoo.benchmark -> scripts/bench_common.py) fails here, not in a
    benchmark sitting hours later: each script is imported as `python scripts/<name>.py` would (scripts/ first on
    the path), without running its main()."""
    scripts = sorted(p.stem for p in (ROOT / "scripts").glob("*.py"))
    probe = (
        "import importlib, sys, traceback\n"
        f"sys.path.insert(0, {str(ROOT / 'scripts')!r})\n"
        "failed = []\n"
        f"for name in {scripts!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed.append(f'{name}: {error!r}')\n"
        "print('FAILED', failed)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FAILED []" in result.stdout, result.stdout[-3000:]
    assert len(scripts) >= 10
