"""Kill a run anywhere, resume it in its folder: the same weights and metrics as the run never interrupted.

Each case runs the real entry point three times: uninterrupted, SIGKILLed at a training step, and resumed with
`resume=<run folder>`. The comparison is `torch.equal` and `==`, not approximately.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnn_zoo.checkpointing import AtomicCheckpointIO, write_atomic
from tests.fixtures import make_image_folder
from tests.fixtures_resume import KILL_AT_STEP
from tests.fixtures_transfer import TINY

ROOT = Path(__file__).resolve().parents[1]
QUIET = [
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=1",
    "+trainer.enable_progress_bar=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "+callbacks.self_kill._target_=tests.fixtures_resume.SelfKill",
]
# the generated MNIST: 240 training images in batches of 32, 8 steps per epoch
MNIST = ["data.download=false", "data.val_size=60", "data.batch_size=32", "model=mnist_cnn", "logger=tensorboard"]


def cli(data_dir: Path, *args: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    env.pop(KILL_AT_STEP, None)
    if kill_at is not None:
        env[KILL_AT_STEP] = str(kill_at)
    return subprocess.run(
        [sys.executable, "-m", "cnn_zoo.train", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


def final_state(run: Path) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return state, json.loads((run / "metrics.json").read_text())


def kill_and_resume(data_dir: Path, tmp_path: Path, args: list[str], kill_at: int) -> tuple[Path, Path]:
    """The uninterrupted run and the killed-then-resumed one, each in its own folder."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    result = cli(data_dir, *args, f"hydra.run.dir={whole}")
    assert result.returncode == 0, result.stderr[-3000:]
    result = cli(data_dir, *args, f"hydra.run.dir={killed}", kill_at=kill_at)
    assert result.returncode == -9, result.stderr[-3000:]  # SIGKILL: no cleanup, no final checkpoint
    assert not (killed / "metrics.json").exists()
    result = cli(data_dir, f"resume={killed}")
    assert result.returncode == 0, result.stderr[-3000:]
    return whole, killed


def assert_same_run(whole: Path, resumed: Path) -> None:
    whole_state, whole_metrics = final_state(whole)
    resumed_state, resumed_metrics = final_state(resumed)
    assert whole_state.keys() == resumed_state.keys()
    different = [k for k in whole_state if not torch.equal(whole_state[k], resumed_state[k])]
    assert different == []
    assert resumed_metrics == whole_metrics


@pytest.mark.parametrize(
    ("kill_at", "extra"),
    [
        (9, []),  # in epoch 1: resumes from the checkpoint at the end of epoch 0
        (13, ["callbacks.last_checkpoint.every_n_train_steps=3"]),  # resumes mid-epoch 1, after step 12
    ],
    ids=["after-an-epoch", "mid-epoch"],
)
def test_killed_run_resumes_to_the_same_weights_and_metrics(
    mnist_root: Path, tmp_path: Path, kill_at: int, extra: list[str]
) -> None:
    args = [*MNIST, *QUIET, "trainer.max_epochs=3", *extra]
    whole, killed = kill_and_resume(mnist_root, tmp_path, args, kill_at)
    assert_same_run(whole, killed)
    # one run folder: one TensorBoard run continued, the report files beside it
    assert len(list((killed / "tensorboard").rglob("events.out.tfevents.*"))) >= 1
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2


def test_fine_tuning_resumes_exactly_across_its_phase_change(tmp_path: Path) -> None:
    pets = make_image_folder(tmp_path / "data" / "pets", layout="folders", per_class=8, odd_files=False)
    args = [
        "data=catsdogs",
        f"data.folder={pets.name}",
        "data.image_size=32",
        "data.num_workers=0",
        "data.batch_size=8",
        "data.normalization=imagenet",
        "model=resnet50_finetune",
        *TINY,
        "model.net.freeze_epochs=1",
        "model.net.unfreeze_blocks=1",
        "logger=none",
        "callbacks.early_stopping=null",
        "callbacks.confusion_matrix=null",
        "callbacks.misclassified=null",
        "callbacks.augmentation_preview=null",
        "trainer.max_epochs=3",
        *QUIET,
    ]
    # 2 steps per epoch; killed in epoch 1 (the first unfrozen one): resumes from the frozen epoch's checkpoint
    whole, killed = kill_and_resume(pets.parent, tmp_path, args, kill_at=3)
    assert_same_run(whole, killed)
    assert "fine-tuning" in (killed / "train.log").read_text()


@pytest.mark.slow
def test_ddp_run_resumes_exactly(mnist_root: Path, tmp_path: Path) -> None:
    args = [*MNIST, *QUIET, "trainer=ddp_cpu", "trainer.max_epochs=2", "logger=none"]
    # two processes: 4 steps per epoch each; both kill themselves at step 5, in epoch 1
    whole, killed = kill_and_resume(mnist_root, tmp_path, args, kill_at=5)
    assert_same_run(whole, killed)


def test_failed_checkpoint_write_leaves_the_previous_one_loadable(tmp_path: Path, monkeypatch) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, last)

    def torn_write(content, handle) -> None:  # the disk fills (or the process dies) half-way through the write
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cnn_zoo.checkpointing.torch.save", torn_write)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(3)}, last)
    loaded = torch.load(last, weights_only=True)
    assert loaded["epoch"] == 1 and torch.equal(loaded["weights"], torch.ones(3))
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temporary file left behind


def test_atomic_write_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.ckpt"
    write_atomic(path, {"epoch": 1})
    write_atomic(path, {"epoch": 2})
    assert torch.load(path, weights_only=True) == {"epoch": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]


def test_optuna_search_killed_mid_trial_never_counts_it_complete(mnist_root: Path, tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    sweep = tmp_path / "search"
    search = [
        "hparams_search=mnist_optuna", f"hydra.sweep.dir={sweep}", "hydra.sweeper.sampler.seed=8", "logger=none",
        "model=lenet", "data.download=false", "data.val_size=60", "data.batch_size=32", "trainer.max_epochs=1",
        *QUIET,
    ]  # fmt: skip
    killed = cli(mnist_root, *search, "hydra.sweeper.n_trials=2", kill_at=3)  # SIGKILL in trial 0's 4th step
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = cli(mnist_root, *search, "hydra.sweeper.n_trials=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name="mnist_optuna", storage=f"sqlite:///{sweep}/optuna.db")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    summary = {r["job"]: r["status"] for r in csv.DictReader((sweep / "summary.csv").open())}
    assert summary == {"0": "interrupted", "1": "completed"}
    assert not (sweep / "0" / "metrics.json").exists()
