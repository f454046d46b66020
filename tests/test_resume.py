"""Kill a run anywhere, resume it in its folder: the same weights and metrics as the run never interrupted.

Each case runs the real entry point three times: uninterrupted, SIGKILLed at a training step, and resumed with
`resume=<run folder>`. The comparison is `torch.equal` and `==`, not approximately.
"""

from __future__ import annotations

import csv
import functools
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from cnn_zoo.callbacks.checkpointing import AtomicCheckpointIO
from cnn_zoo.data.image_folder import ImageFolderDataModule
from cnn_zoo.data.sampling import EpochLoader, EpochRandomSampler, SeededSamples
from cnn_zoo.runtime.atomic import write_atomic
from cnn_zoo.runtime.config_values import to_plain
from tests import conftest
from tests.conftest import run_command
from tests.fixtures import make_image_folder
from tests.fixtures_resume import KILL_AT_STEP
from tests.fixtures_transfer import TINY

ROOT = Path(__file__).resolve().parents[1]
QUIET = [*conftest.QUIET, "trainer.deterministic=true", "+callbacks.self_kill._target_=tests.fixtures_resume.SelfKill"]
# the generated MNIST: 240 training images in batches of 32, 8 steps per epoch
MNIST = ["data.download=false", "data.val_size=60", "data.batch_size=32", "model=mnist_cnn", "logger=tensorboard"]


def cli(data_dir: Path, *args: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", **({KILL_AT_STEP: str(kill_at)} if kill_at is not None else {})}
    return run_command("cnn_zoo.train", *args, data_dir=data_dir, env=env, cwd=ROOT, timeout=600)


def final_state(run: Path) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return state, json.loads((run / "metrics.json").read_text())


def kill_and_resume(
    data_dir: Path, tmp_path: Path, args: list[str], kill_at: int, killed_args: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """The uninterrupted run and the killed-then-resumed one (`killed_args` on top), each in its own folder."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    result = cli(data_dir, *args, f"hydra.run.dir={whole}")
    assert result.returncode == 0, result.stderr[-3000:]
    result = cli(data_dir, *args, *killed_args, f"hydra.run.dir={killed}", kill_at=kill_at)
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


def pets_run(tmp_path: Path, *extra: str) -> tuple[Path, list[str]]:
    """A tiny cats/dogs folder (its data root) and a 3-epoch run on it: 32 px, no workers, no drawing callbacks."""
    pets = make_image_folder(tmp_path / "data" / "pets", layout="folders", per_class=8, odd_files=False)
    common = ["data=catsdogs", f"data.folder={pets.name}", "data.image_size=32", "data.num_workers=0", "logger=none"]
    drawn = ["callbacks.early_stopping=null", "callbacks.confusion_matrix=null", "callbacks.misclassified=null"]
    return pets.parent, [*common, *extra, *drawn, "trainer.max_epochs=3", *QUIET]


def test_fine_tuning_resumes_exactly_across_its_phase_change(tmp_path: Path) -> None:
    data_dir, args = pets_run(
        tmp_path,
        "data.batch_size=8",
        "data.normalization=imagenet",
        "model=resnet50_finetune",
        *TINY,
        "model.net.freeze_epochs=1",
        "model.net.unfreeze_blocks=1",
        "callbacks.augmentation_preview=null",
    )
    # 2 steps per epoch; killed in epoch 1 (the first unfrozen one): resumes from the frozen epoch's checkpoint
    whole, killed = kill_and_resume(data_dir, tmp_path, args, kill_at=3)
    assert_same_run(whole, killed)
    assert "fine-tuning" in (killed / "train.log").read_text()


@pytest.mark.slow
def test_ddp_run_resumes_exactly(mnist_root: Path, tmp_path: Path) -> None:
    every = "callbacks.last_checkpoint.every_n_train_steps=3"
    args = [*MNIST, *QUIET, "trainer=ddp_cpu", "trainer.max_epochs=2", "logger=none", every]
    # two processes, 120 images each: 4 steps per epoch (the last of 24); both kill themselves at step 3. The
    # resumed ranks skip their first 3 batches, train the short fourth, end epoch 0 and train epoch 1 whole.
    whole, killed = kill_and_resume(mnist_root, tmp_path, args, kill_at=3)
    assert_same_run(whole, killed)
    log = (killed / "train.log").read_text()
    assert "resuming mid-epoch 0 after its first 3 batches" in log and "cannot skip" not in log


def test_sampler_shuffles_by_seed_and_epoch_and_shares_the_epoch_between_ranks() -> None:
    n = 83
    single = EpochRandomSampler(range(n), seed=7)
    for epoch in range(3):
        single.set_epoch(epoch)
        assert list(single) == torch.randperm(n, generator=torch.Generator().manual_seed(7 + epoch)).tolist()
        assert len(single) == n  # one process: neither padded nor cut
    ranks = [EpochRandomSampler(range(n), seed=7, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(1)
    shares = [list(sampler) for sampler in ranks]
    assert isinstance(ranks[0], DistributedSampler) and [len(s) for s in ranks] == [42, 42]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(8)).tolist()
    assert shares[0] == order[0::2] and shares[1] == (order + order[:1])[1::2]  # padded with the first index
    ranks[1].skip_next(32)  # samples of this rank
    assert list(ranks[1]) == shares[1][32:] and list(ranks[1]) == shares[1]  # the skip lasts one iteration


def test_training_loader_asks_for_the_order_at_the_first_batch_even_with_workers() -> None:
    data = list(range(12))
    sampler = EpochRandomSampler(data, seed=5)
    batches = iter(EpochLoader(data, batch_size=4, sampler=sampler, num_workers=2))
    sampler.set_epoch(3)  # Lightning makes the iterator first, then sets the epoch; a resume then skips
    sampler.skip_next(4)
    expected = torch.randperm(12, generator=torch.Generator().manual_seed(8))[4:].tolist()
    assert torch.cat(list(batches)).tolist() == expected


class Seeded(SeededSamples):
    def __len__(self) -> int:
        return 10


def test_sampler_gives_seeded_datasets_a_seed_per_seed_epoch_and_sample() -> None:
    sampler = EpochRandomSampler(Seeded(), seed=3)
    pairs = list(sampler)
    assert sorted(i for i, _ in pairs) == list(range(10))
    seeds = dict(pairs)
    sampler.skip_next(4)
    assert list(sampler) == pairs[4:]
    rank = EpochRandomSampler(Seeded(), seed=3, num_replicas=2, rank=1)
    assert all(seeds[i] == s for i, s in rank)  # a sample's seed does not depend on which rank draws it
    sampler.set_epoch(1)
    assert dict(sampler) != seeds  # nor repeat in the next epoch
    assert all(isinstance(i, int) for i in EpochRandomSampler(list(range(10)), seed=3))  # others: plain indices


def test_augmentation_of_a_sample_is_a_function_of_its_seed(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=4, odd_files=False)
    augmentation = to_plain(OmegaConf.load(ROOT / "conf" / "augmentation" / "flip_rotate_zoom.yaml"))
    dm = ImageFolderDataModule(data_dir=str(root.parent), folder=root.name, image_size=32, num_workers=0,
                               augmentation=augmentation)  # fmt: skip
    dm.setup("fit")
    train = dm.train_set
    assert isinstance(train, SeededSamples) and train.wants_sample_seeds and not dm.val_set.wants_sample_seeds
    first = train[(2, 1234)][0]
    train[(5, 99)], train[3]  # other draws in between (another sample, an unseeded one) change nothing
    assert torch.equal(train[(2, 1234)][0], first)
    assert not all(torch.equal(train[(2, seed)][0], first) for seed in range(1, 5))
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochRandomSampler) and loader.sampler.seeded
    dm.trainer = SimpleNamespace(world_size=2)  # DDP, but no process group yet: the loader would not be sharded
    with pytest.raises(RuntimeError, match="built for 1 process"):
        dm.train_dataloader()


def test_augmented_run_is_the_same_with_any_worker_count_and_resumes_mid_epoch_exactly(tmp_path: Path) -> None:
    data_dir, args = pets_run(
        tmp_path,
        "data.batch_size=4",
        "augmentation=flip_rotate_zoom",
        "model=small_cnn",
        "model.net.filters=[4,8]",
        "callbacks.last_checkpoint.every_n_train_steps=3",
    )
    # 16 training images: 4 steps per epoch. The uninterrupted run has no workers; the killed run (and so its
    # resumption) has two, killed at step 7: it resumes after the step-6 checkpoint, mid-epoch 1, then trains epoch 2
    whole, killed = kill_and_resume(data_dir, tmp_path, args, kill_at=7, killed_args=("data.num_workers=2",))
    assert_same_run(whole, killed)
    assert "resuming mid-epoch 1 after its first 2 batches" in (killed / "train.log").read_text()


def test_failed_checkpoint_write_leaves_the_previous_one_loadable(tmp_path: Path, monkeypatch) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, last)

    def torn_write(content, handle) -> None:  # the disk fills (or the process dies) half-way through the write
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cnn_zoo.callbacks.checkpointing.torch.save", torn_write)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(3)}, last)
    loaded = torch.load(last, weights_only=True)
    assert loaded["epoch"] == 1 and torch.equal(loaded["weights"], torch.ones(3))
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temporary file left behind


def test_atomic_write_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.ckpt"
    write_atomic(path, functools.partial(torch.save, {"epoch": 1}))
    write_atomic(path, functools.partial(torch.save, {"epoch": 2}))
    assert torch.load(path, weights_only=True) == {"epoch": 2}
    write_atomic(tmp_path / "a.md", "text")  # text and bytes too (sweep summaries)
    write_atomic(tmp_path / "a.bin", b"\x00\x01")
    assert (tmp_path / "a.md").read_text() == "text" and (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.ckpt", "a.md"]


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
    (job0,) = [p for p in sweep.iterdir() if p.is_dir() and p.name.startswith("0_")]  # 0_<its swept overrides>
    assert not (job0 / "metrics.json").exists()
