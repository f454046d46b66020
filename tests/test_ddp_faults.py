"""Divergence and stop signals under `trainer=ddp_cpu` (2 gloo processes), through the real command line.

Every rank meets the fault at the same step: one line from rank zero (the other rank logs it to its own log
file), the documented exit status, no traceback, and no rank process left running after the command; a run
stopped by SIGTERM resumes to the metrics and weights of a DDP run never interrupted. Two CPU processes train the
generated MNIST (240 images, 4 steps per epoch and rank), 3 epochs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.fixtures_faults import FAULT, STEP
from tests.test_faults import ARGS, assert_same_run, cli, metrics, one_line

# 3 epochs: the stop comes in epoch 2, so the last epoch's training metrics cover all its batches after resume too
DDP = [*ARGS, "trainer=ddp_cpu"]


def rank_processes(run: Path) -> list[int]:
    """The processes still running a command in `run` (a rank left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and "cnn_zoo.train" in command and str(run) in command:
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="module")
def whole_ddp(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ddp_faults") / "whole"
    result = cli(mnist_root, *DDP, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_a_nan_loss_under_ddp_is_one_line_from_rank_zero_and_exit_3(mnist_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = cli(mnist_root, *DDP, f"hydra.run.dir={run}", **{FAULT: "nan", STEP: "5"})  # epoch 2's second step
    line = one_line(result, 3)  # one `error:` line for both ranks, no traceback
    assert line.startswith("error: training diverged at epoch 2, step 6: loss is nan; lower optimizer.lr")
    assert f"the last finite checkpoint is {run / 'checkpoints' / 'last.ckpt'} (epoch 1, step 4)" in line
    recorded = metrics(run)
    assert recorded["status"] == "diverged" and recorded["error"] == line.removeprefix("error: ")
    assert line.removeprefix("error: ") in (run / "train_rank1.log").read_text()  # rank one logged it
    assert "training diverged" not in result.stdout  # ...to its log file, not to the console a second time
    assert rank_processes(run) == []


def test_sigterm_to_the_launching_process_under_ddp_saves_stops_and_resumes_exactly(
    mnist_root: Path, whole_ddp: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = cli(mnist_root, *DDP, f"hydra.run.dir={run}", **{FAULT: "sigterm", STEP: "5"})
    line = one_line(result, 143, prefix="stopped")
    assert line == f"stopped at epoch 2, step 6 (SIGTERM); continue with resume={run}"
    assert rank_processes(run) == []
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 6 and not (run / "metrics.json").exists()
    assert not list(run.rglob(".*.tmp"))
    resumed = cli(mnist_root, f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(whole_ddp, run)
