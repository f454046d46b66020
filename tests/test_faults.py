"""The faults a long run meets, through the real command line: divergence, a full disk, stop signals, SLURM.

Each fault is one line, a documented exit status, nothing saved before it damaged, and (where the run can go on)
`resume=<run folder>` ends with the metrics of a run never interrupted (`==`, as tests/test_resume.py). Faults are
injected at a chosen step by a test-only callback (tests/fixtures_faults.py); the full disk is a real small tmpfs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.fixtures_faults import FAULT, SLEEP, STEP

ROOT = Path(__file__).resolve().parents[1]
# the generated MNIST: 240 training images in batches of 32, 8 steps per epoch, 3 epochs
ARGS = [
    "data.download=false", "data.val_size=60", "data.batch_size=32", "model=mnist_cnn", "logger=none",
    "trainer.accelerator=cpu", "trainer.deterministic=true", "trainer.max_epochs=3",
    "+trainer.enable_progress_bar=false", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null",
    "callbacks.confusion_matrix=null", "callbacks.misclassified=null", "callbacks.augmentation_preview=null",
    "+callbacks.inject._target_=tests.fixtures_faults.InjectFault",
]  # fmt: skip


def environment(data_dir: Path, **faults: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (FAULT, STEP, SLEEP) and not k.startswith("SLURM_")}
    env.update({"CNN_ZOO_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", **faults})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def cli(data_dir: Path, *args: str, **faults: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnn_zoo.train", *args],
        capture_output=True, text=True, env=environment(data_dir, **faults), cwd=ROOT, timeout=600,
    )  # fmt: skip


def one_line(result: subprocess.CompletedProcess, status: int, prefix: str = "error:") -> str:
    """The one `prefix` line of stderr, with the exit status and no traceback checked."""
    lines = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    assert result.returncode == status, result.stderr[-3000:]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def whole(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run never interrupted, to compare the resumed ones with."""
    run = tmp_path_factory.mktemp("faults") / "whole"
    result = cli(mnist_root, *ARGS, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def assert_same_run(whole: Path, resumed: Path) -> None:
    assert metrics(resumed) == metrics(whole)
    expected, got = final_weights(whole), final_weights(resumed)
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []


# ---------------------------------------------------------------------- divergence
def test_a_huge_learning_rate_stops_the_run_at_once_with_exit_3(mnist_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = cli(mnist_root, *ARGS, "optimizer=sgd", "optimizer.lr=1e6", f"hydra.run.dir={run}")
    line = one_line(result, 3)
    assert line.startswith("error: training diverged at epoch 1, step ")
    assert ": loss is nan" in line or ": loss is inf" in line
    assert "lower optimizer.lr (now 1e6)" in line and "no checkpoint was saved" in line
    recorded = metrics(run)
    assert recorded["status"] == "diverged" and recorded["error"] == line.removeprefix("error: ")
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").glob("*.ckpt"))


def test_divergence_keeps_and_names_the_last_finite_checkpoint(mnist_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = cli(mnist_root, *ARGS, f"hydra.run.dir={run}", **{FAULT: "nan", STEP: "10"})  # in epoch 2
    line = one_line(result, 3)
    last = run / "checkpoints" / "last.ckpt"
    assert line.startswith("error: training diverged at epoch 2, step 11: loss is nan; lower optimizer.lr (now 0.001)")
    assert f"the last finite checkpoint is {last} (epoch 1, step 8)" in line
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (0, 8)
    assert all(bool(torch.isfinite(t).all()) for t in checkpoint["state_dict"].values() if t.is_floating_point())
    assert metrics(run)["status"] == "diverged"
    assert not list(run.glob("checkpoints/epoch_002*"))  # nothing saved after it (names count epochs from 1)


def test_a_sweep_records_the_diverged_job_and_runs_the_other(mnist_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = [a for a in ARGS if a != "trainer.max_epochs=3"]
    result = cli(mnist_root, "-m", *args, "trainer.max_epochs=1", "optimizer=sgd", "optimizer.lr=1e6,1e-2",
                 f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode != 0  # Hydra's basic sweeper reports the failed job once every job has run
    first, second = (next(sweep.glob(f"{n}_*")) for n in (0, 1))  # job folders `<n>_<swept overrides>`
    assert metrics(first)["status"] == "diverged"
    assert json.loads((first / "job.json").read_text())["status"] == "failed"
    assert "test/acc" in metrics(second) and "status" not in metrics(second)
    assert "2 jobs: 1 completed, 1 diverged" in (sweep / "summary.md").read_text()


def test_divergence_is_a_callback_that_null_turns_off(compose_cfg) -> None:
    from cnn_zoo.callbacks.divergence import Divergence
    from cnn_zoo.callbacks.stop_signals import StopSignals
    from cnn_zoo.training.pipeline import build_trainer

    def kinds(*overrides: str) -> set[type]:
        return {type(c) for c in build_trainer(compose_cfg("trainer.accelerator=cpu", *overrides)).callbacks}

    assert {Divergence, StopSignals} <= kinds()
    assert Divergence not in kinds("callbacks.divergence=null")
    assert StopSignals not in kinds("callbacks.stop_signals=null")


def spikes(divergence, losses: list[float]) -> list[bool]:
    found = []
    for loss in losses:
        value = torch.tensor(loss)
        spike = divergence._is_spike(value)
        found.append(spike)
        if not spike:
            divergence._update_stats(value)
    return found


def test_a_non_finite_loss_counts_from_the_first_step_and_spikes_only_with_a_factor() -> None:
    from cnn_zoo.callbacks.divergence import Divergence

    assert spikes(Divergence(), [float("nan")]) == [True]
    assert spikes(Divergence(warmup=5), [2.0, float("inf")]) == [False, True]
    assert spikes(Divergence(), [2.0, 1.0, 50.0, 3.0]) == [False] * 4  # no spike_factor: non-finite losses only
    found = spikes(Divergence(spike_factor=10, window=3, warmup=3), [1.0, 40.0, 1.0, 1.0, 1.0, 9.0, 40.0])
    # 40 during the warm-up is no spike; after it, 40 is over 10x the mean of the last 3 (1, 1, 9)
    assert found == [False, False, False, False, False, False, True]
    assert spikes(Divergence(spike_factor=10, window=3, warmup=0), [1.0, 1.0, 1.0, 9.0, 30.0]) == [False] * 5


def test_divergence_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    from cnn_zoo.callbacks.divergence import Divergence

    first = Divergence(spike_factor=4, window=3, warmup=0)
    spikes(first, [1.0, 2.0, 1.5])
    torch.save(first.state_dict(), tmp_path / "state.pt")
    second = Divergence(spike_factor=4, window=3, warmup=0)
    second.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert second.steps_seen == 3 and float(second.last_val) == 1.5
    assert spikes(second, [5.0]) == spikes(first, [5.0]) == [False]
    assert spikes(second, [20.0]) == spikes(first, [20.0]) == [True]  # over 4x the mean of (2, 1.5, 5)


# ---------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs of `size` mounted under tmp_path (root only); `grow(size)` frees space by enlarging it."""
    mount = tmp_path / "disk"
    mount.mkdir()

    def make(size: str) -> SimpleNamespace:
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]
        result = subprocess.run(command, capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (not root, or no mount permission): {result.stderr!r}")

        def grow(bigger: str) -> None:
            subprocess.run(["mount", "-o", f"remount,size={bigger}", str(mount)], check=True)

        return SimpleNamespace(path=mount, grow=grow)

    yield make
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_and_the_run_resumes_exactly_once_space_is_freed(
    mnist_root: Path, whole: Path, small_disk
) -> None:
    disk = small_disk("3m")  # epoch 1's best and last checkpoints (1.1 MB each) fit, epoch 2's do not
    run = disk.path / "run"
    result = cli(mnist_root, *ARGS, f"hydra.run.dir={run}")
    line = one_line(result, 2)
    assert line.startswith(f"error: no space left on device writing {run / 'checkpoints'}/")
    assert " free in " in line and " needed)" in line and f"continue with resume={run}" in line
    epoch_one = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert epoch_one["epoch"] == 0  # whole and loadable
    assert not list(run.rglob(".*.tmp"))  # the half-written temporary file is gone
    disk.grow("50m")
    resumed = cli(mnist_root, f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(whole, run)


def test_a_disk_full_at_the_first_checkpoint_says_to_start_again(mnist_root: Path, small_disk) -> None:
    disk = small_disk("600k")
    run = disk.path / "run"
    line = one_line(cli(mnist_root, *ARGS, f"hydra.run.dir={run}"), 2)
    assert "no space left on device writing" in line and "start the run again" in line


def test_a_full_disk_anywhere_in_the_exception_chain_is_found() -> None:
    import errno

    from cnn_zoo.runtime.faults import disk_full_message, full_disk_error

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/tensorboard/events.out")
        except OSError as inner:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from inner
    except RuntimeError as err:
        assert full_disk_error(err).errno == errno.ENOSPC
        message = disk_full_message(err, Path("/runs/x"))
    assert message.startswith("no space left on device writing /runs/x/tensorboard/events.out (")
    assert full_disk_error(RuntimeError("other")) is None


def test_a_full_disk_writing_train_log_stops_the_run_at_once_and_resume_finishes_it(
    mnist_root: Path, whole: Path, small_disk
) -> None:
    disk = small_disk("20m")  # room enough: the disk is filled mid-epoch 2 by another file, then a record is logged
    run = disk.path / "run"
    result = cli(mnist_root, *ARGS, f"hydra.run.dir={run}", **{FAULT: "fill_disk_log", STEP: "10"})
    line = one_line(result, 2)
    assert line.startswith(f"error: no space left on device writing {run / 'train.log'} (0 bytes free in {run}, ")
    assert " bytes needed); " in line or " KB needed); " in line
    assert line.endswith(f"continue with resume={run} (the checkpoints saved before are whole)")
    assert "Logging error" not in result.stderr  # logging's own traceback is not printed
    epoch_one = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert epoch_one["epoch"] == 0 and not (run / "metrics.json").exists()  # stopped at once, in epoch 2
    (disk.path / "filler").unlink()
    resumed = cli(mnist_root, f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(whole, run)


@pytest.mark.parametrize(
    ("fault", "written", "extra"),
    [
        ("fill_disk_event", "tensorboard/events.out.tfevents.", ["logger=tensorboard", "+logger.tensorboard.flush_secs=0"]),  # noqa: E501
        ("fill_disk_after_test", "metrics.json", []),
    ],
)  # fmt: skip
def test_a_full_disk_writing_an_event_file_or_metrics_json_is_the_same_one_line(
    fault: str, written: str, extra: list[str], mnist_root: Path, small_disk
) -> None:
    disk = small_disk("20m")
    run = disk.path / "run"
    result = cli(mnist_root, *ARGS, *extra, f"hydra.run.dir={run}", **{FAULT: fault, STEP: "10"})
    line = one_line(result, 2)  # TensorBoard's writer thread dies of it too: no "Exception in thread" traceback
    assert line.startswith(f"error: no space left on device writing {run / written}")
    assert f" (0 bytes free in {run}" in line
    assert line.endswith(f"continue with resume={run} (the checkpoints saved before are whole)")
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] >= 0
    assert not list(run.rglob(".*.tmp"))


def test_the_run_files_on_a_full_disk_name_themselves_and_leave_the_previous_file_whole(small_disk) -> None:
    from cnn_zoo.reporting.run_page import write_run_page
    from cnn_zoo.runtime.faults import DiskFull, write_json
    from tests.fixtures_faults import fill_disk

    disk = small_disk("1m")
    write_json(disk.path, "data.json", {"classes": ["a", "b"]})
    fill_disk(disk.path / "filler")
    with pytest.raises(DiskFull) as raised:
        write_json(disk.path, "data.json", {"classes": ["a" * 10000]})
    assert raised.value.path == disk.path / "data.json" and raised.value.needed > 10000
    assert json.loads((disk.path / "data.json").read_text()) == {"classes": ["a", "b"]}
    with pytest.raises(DiskFull) as raised:
        write_run_page(disk.path)  # any other failure of the page is a warning; a full disk stops the run
    assert raised.value.path == disk.path / "report.html"
    assert sorted(p.name for p in disk.path.iterdir()) == ["data.json", "filler"]


def test_the_log_handler_writes_nothing_after_a_full_disk_and_keeps_loggings_other_errors(
    small_disk, capsys: pytest.CaptureFixture
) -> None:
    import logging

    from cnn_zoo.cli.run_logging import RunLogFile
    from cnn_zoo.runtime.faults import DiskFull
    from tests.fixtures_faults import fill_disk

    disk = small_disk("1m")
    handler = RunLogFile(str(disk.path / "train.log"))
    logger = logging.getLogger("tests.full_disk_log")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("bad %d", "format")  # a bug in a log call: logging's traceback, the run goes on
        assert "--- Logging error ---" in capsys.readouterr().err
        logger.warning("before")
        fill_disk(disk.path / "filler")
        with pytest.raises(DiskFull) as raised:
            logger.warning("%s", "x" * 8192)
        assert raised.value.path == disk.path / "train.log" and raised.value.needed == len("x" * 8192) + 1
        logger.warning("after")  # dropped, not raised again: the run is stopping
        handler.close()
    finally:
        logger.removeHandler(handler)
    assert "before\n" in (disk.path / "train.log").read_text() and "after" not in (disk.path / "train.log").read_text()
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------- stop signals
@pytest.mark.parametrize(("kind", "status"), [("sigterm", 143), ("sigint", 130)])
def test_a_stop_signal_mid_epoch_saves_and_the_resumed_run_is_the_same(
    kind: str, status: int, mnist_root: Path, whole: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = cli(mnist_root, *ARGS, f"hydra.run.dir={run}", **{FAULT: kind, STEP: "12"})  # in step 13, epoch 2
    line = one_line(result, status, prefix="stopped")
    assert line == f"stopped at epoch 2, step 13 ({kind.upper()}); continue with resume={run}"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 13 and not (run / "metrics.json").exists()
    resumed = cli(mnist_root, f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming mid-epoch 1 after its first 5 batches" in (run / "train.log").read_text()
    assert_same_run(whole, run)


def test_a_stop_in_the_last_epoch_resumes_to_the_same_training_metrics(
    mnist_root: Path, whole: Path, tmp_path: Path
) -> None:
    """The final metrics.json holds the last epoch's train/* values: the batches tallied before the stop travel in
    the checkpoint, so the resumed epoch's loss and accuracy cover all of its batches (before: only those after)."""
    run = tmp_path / "run"
    result = cli(mnist_root, *ARGS, f"hydra.run.dir={run}", **{FAULT: "sigterm", STEP: "20"})  # in step 21, epoch 3
    assert one_line(result, 143, prefix="stopped").startswith("stopped at epoch 3, step 21 (SIGTERM)")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["train_tally"]["samples"] == 5 * 32  # the last epoch's batches before the stop
    resumed = cli(mnist_root, f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(whole, run)
    assert {k for k in metrics(run) if k.startswith("train/")} >= {"train/loss", "train/acc"}


def test_ctrl_c_from_outside_stops_cleanly_and_resumes_exactly(mnist_root: Path, whole: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = environment(mnist_root, **{SLEEP: "0.3"})  # 2.4 s an epoch: time to be interrupted
    process = subprocess.Popen(
        [sys.executable, "-m", "cnn_zoo.train", *ARGS, f"hydra.run.dir={run}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    log = run / "train.log"
    deadline = time.monotonic() + 300
    while not (log.is_file() and "first training step" in log.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    line = one_line(result, 130, prefix="stopped")
    assert line.endswith(f"(SIGINT); continue with resume={run}")
    resumed = cli(mnist_root, f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(whole, run)


def test_slurms_pre_kill_signal_saves_and_stops(mnist_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = cli(mnist_root, *ARGS, "trainer.max_epochs=1", f"hydra.run.dir={run}", **{FAULT: "sigusr1", STEP: "2"})
    line = one_line(result, 138, prefix="stopped")
    assert line == f"stopped at epoch 1, step 3 (SIGUSR1); continue with resume={run}"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_slurm_requeue_runs_scontrol_on_the_requeue_signal_only(tmp_path: Path, monkeypatch) -> None:
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    from cnn_zoo.callbacks.stop_signals import StopSignals

    calls = tmp_path / "calls"
    scontrol = tmp_path / "bin" / "scontrol"
    scontrol.parent.mkdir()
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{scontrol.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)

    def trainer(environment) -> SimpleNamespace:
        return SimpleNamespace(_accelerator_connector=SimpleNamespace(cluster_environment=environment),
                               is_global_zero=True)  # fmt: skip

    requeueing = SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1)
    assert StopSignals.requeue(trainer(requeueing), signal.SIGUSR1)
    assert not StopSignals.requeue(trainer(requeueing), signal.SIGTERM)
    assert not StopSignals.requeue(trainer(SLURMEnvironment(auto_requeue=False)), signal.SIGUSR1)
    assert not StopSignals.requeue(trainer(LightningEnvironment()), signal.SIGUSR1)
    assert calls.read_text() == "requeue 4242\n"


def test_a_requeued_slurm_job_continues_from_its_last_checkpoint(tmp_path: Path, monkeypatch) -> None:
    from cnn_zoo.callbacks.checkpointing import resume_checkpoint
    from cnn_zoo.cli.run_folder import check_run_folder

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}, "hyper_parameters": {"net": {}, "data": {}}, "optimizer_states": [], "loops": {},
                "epoch": 0, "global_step": 3}, run / "checkpoints" / "last.ckpt")  # fmt: skip
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert resume_checkpoint(None, run) is None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resume_checkpoint(None, run) == str((run / "checkpoints" / "last.ckpt").resolve())
    check_run_folder(run, None)  # the requeued job may write where it left off


def test_the_slurm_trainer_config_gives_lightnings_slurm_environment_with_requeue(compose_cfg) -> None:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from cnn_zoo.callbacks.checkpointing import AtomicCheckpointIO
    from cnn_zoo.training.pipeline import instantiate

    plugins = [instantiate(p, "trainer") for p in compose_cfg("trainer=slurm").trainer.plugins]
    assert [type(p) for p in plugins] == [AtomicCheckpointIO, SLURMEnvironment]
    assert plugins[1].auto_requeue and int(plugins[1].requeue_signal) == signal.SIGUSR1
    assert compose_cfg("trainer=slurm", "trainer.plugins.1.auto_requeue=false").trainer.plugins[1].auto_requeue is False


# ---------------------------------------------------------------------- data.batch_size=auto
def test_an_automatic_batch_size_on_the_cpu_without_a_cap_or_under_ddp_is_refused_in_one_line(
    mnist_root: Path, tmp_path: Path
) -> None:
    line = one_line(cli(mnist_root, *ARGS, "data.batch_size=auto", f"hydra.run.dir={tmp_path / 'cpu'}"), 2)
    assert line.startswith("error: data.batch_size=auto on the CPU needs a cap: ")
    assert "set batch_size_finder.max_val=<largest batch to try>" in line
    line = one_line(cli(mnist_root, *ARGS, "trainer=ddp_cpu", "data.batch_size=auto", "batch_size_finder.max_val=64",
                        f"hydra.run.dir={tmp_path / 'ddp'}"), 2)  # fmt: skip
    assert line.startswith("error: data.batch_size=auto runs Lightning's batch-size finder, which does not support DDP")


def test_an_automatic_batch_size_is_found_applied_recorded_and_reused_on_resume(
    mnist_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = [a for a in ARGS if a not in ("data.batch_size=32", "trainer.max_epochs=3")]
    args += ["data.batch_size=auto", "batch_size_finder.max_val=64", "trainer.max_epochs=2"]
    stopped = cli(mnist_root, *args, f"hydra.run.dir={run}", **{FAULT: "sigterm", STEP: "5"})
    one_line(stopped, 143, prefix="stopped")
    assert json.loads((run / "batch_size.json").read_text()) == {"batch_size": 64}  # 2, 4, ... up to the cap
    assert "data.batch_size=auto: 64 (Lightning's batch-size finder" in (run / "train.log").read_text()
    assert not list(run.glob(".scale_batch_size_*"))  # the finder's own checkpoint is gone
    resumed = cli(mnist_root, f"resume={run}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert "data.batch_size=auto: 64, found when this run started" in log and log.count("trying batch size 4") == 1
    assert metrics(run)["data/batch_size"] == 64
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 8  # 240 images in batches of 64: 4 steps an epoch, 2 epochs
    assert json.loads((run / "data.json").read_text())["datamodule"]["batch_size"] == 64
    assert last["hyper_parameters"]["data"]["datamodule"]["batch_size"] == 64  # evaluate rebuilds the data with it
