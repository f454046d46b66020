"""What a new user sees first: a default training's output, epoch numbers, and the guard of finished runs.

The run is the default command (LeNet on MNIST, default callbacks, logger and progress bar), one batch of each
stage, from a fresh working folder, with stdout not a terminal (as in a log file or CI).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ONE_BATCH = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.download=false",
    "data.val_size=60",
    "trainer.accelerator=cpu",
]
BOX_DRAWING = set("│┃┏┓┗┛┡┩└┘━─┳┻╇╈┼┬┴ ")


def default_run(data_dir: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(data_dir), "CNN_ZOO_CACHE_DIR": str(cwd / ".cache")}
    return subprocess.run(
        [sys.executable, "-m", "cnn_zoo.train", *ONE_BATCH, *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_default_run_prints_no_warning_no_traceback_and_no_line_twice(mnist_root: Path, tmp_path: Path) -> None:
    result = default_run(mnist_root, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Warning" not in output and "warn" not in output.lower()
    assert "Traceback" not in output
    assert "litlogger" not in output and "Tip:" not in output
    assert not any(line.startswith("INFO: ") for line in output.splitlines())  # Lightning's own console handler
    # every line but the rows of rich's tables (the model summary wraps its shape columns alike)
    lines = [line.strip() for line in output.splitlines() if line.strip() and line.strip()[0] not in BOX_DRAWING]
    twice = {line: n for line, n in Counter(lines).items() if n > 1}
    assert not twice, twice
    assert "Seed set to 42" in output and "epoch 1/1 " in output  # Lightning's lines and ours, once each
    for tuning in ("OpenMP waiting", "denormal floats"):  # the command's CPU settings: in train.log at DEBUG only
        assert tuning not in output


def test_epochs_are_counted_from_one_in_the_log_and_the_checkpoint_names(mnist_root: Path, tmp_path: Path) -> None:
    result = default_run(mnist_root, tmp_path, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "epoch 1/2 " in log and "epoch 2/2 " in log and "epoch 0/" not in log
    # the entry point's CPU settings, in the log file only (the console's are checked above)
    assert "OpenMP waiting: " in log and "memory: freed blocks up to 32 MB kept for reuse" in log
    best = [p.name for p in (tmp_path / "run" / "checkpoints").glob("epoch_*.ckpt")]
    assert best and all(name in ("epoch_001.ckpt", "epoch_002.ckpt") for name in best)


def test_the_epoch_progress_bar_counts_from_one() -> None:
    from types import SimpleNamespace

    from cnn_zoo.callbacks.epoch_numbers import EpochProgressBar

    bar = EpochProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=10)  # what Lightning attaches before drawing
    assert bar._get_train_description(0).strip() == "Epoch 1/10"
    assert bar._get_train_description(9).strip() == "Epoch 10/10"


def test_a_second_run_into_a_default_named_folder_holding_a_finished_run_is_refused(
    mnist_root: Path, tmp_path: Path
) -> None:
    """The default folder is `outputs/runs/<date>_<time>_<data>_<model>`: finished runs wait in the names of the
    next minute, so whichever second the run starts in, its folder holds one."""
    start = dt.datetime.now()
    planted = []
    for second in range(90):
        name = (start + dt.timedelta(seconds=second)).strftime("%Y-%m-%d_%H-%M-%S") + "_mnist_lenet"
        folder = tmp_path / "outputs" / "runs" / name
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text('{"test/acc": 0.99}')
        planted.append(folder)
    result = default_run(mnist_root, tmp_path)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: hydra.run.dir=")
    assert "already holds a finished run" in errors[0] and "resume=" in errors[0]
    assert "Traceback" not in result.stderr
    for folder in planted:  # nothing written into any of them
        assert sorted(p.name for p in folder.iterdir()) == ["metrics.json"]
