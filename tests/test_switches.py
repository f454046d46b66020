"""The training switches (docs/switches.md): each composes with the runs it applies to and is refused where not."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import open_dict

from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.train import train
from cnn_zoo.training.classifier import Classifier
from cnn_zoo.training.mixing import BatchMixing, check_mixing, mixing_config, soft_target_loss
from cnn_zoo.training.pipeline import build_classifier, build_datamodule
from tests.fixtures_sequences import make_imdb_archive
from tests.test_imdb import TINY_MODEL
from tests.test_resume import MNIST, QUIET, assert_same_run, kill_and_resume
from tests.test_train import mnist_overrides

QUICK = ("logger=none", "trainer.max_epochs=1")


def checkpoint(run: Path, name: str = "last.ckpt") -> dict:
    path = next((run / "checkpoints").glob(name))
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------ label smoothing, mixup, cutmix
def test_mixup_and_cutmix_give_soft_targets_and_the_soft_loss_is_cross_entropy() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8) % 4
    mixed, target = BatchMixing(4, mixup_alpha=0.4, cutmix_alpha=1.0)(x, y)
    assert mixed.shape == x.shape and target.shape == (8, 4)
    assert torch.allclose(target.sum(1), torch.ones(8)) and not torch.equal(mixed, x)
    unmixed, one_hot = BatchMixing(4, mixup_alpha=0.4, cutmix_alpha=0.0, mixup_prob=0.0)(x, y)
    assert torch.equal(unmixed, x) and torch.equal(one_hot, F.one_hot(y, 4).float())
    logits = torch.randn(8, 4)
    assert torch.allclose(soft_target_loss(logits, one_hot, False, None, 0.0), F.cross_entropy(logits, y))
    smoothed = soft_target_loss(logits, one_hot, False, None, 0.1)
    assert torch.allclose(smoothed, F.cross_entropy(logits, y, label_smoothing=0.1))
    binary = torch.randn(8, 1)  # one logit: the target is P(class 1), smoothed towards 1/2
    expected = F.binary_cross_entropy_with_logits(binary[:, 0], (y % 2).float() * 0.8 + 0.1)
    assert torch.allclose(soft_target_loss(binary, F.one_hot(y % 2, 2).float(), True, None, 0.2), expected)


def test_mixing_config_is_checked_and_off_at_zero() -> None:
    assert mixing_config({"transforms": [], "mixup_alpha": 0.0, "cutmix_alpha": 0}) is None
    assert mixing_config({"mixup_alpha": 0.2})["mixup_prob"] == 1.0
    with pytest.raises(CnnZooError, match=r"augmentation.mixup_prob must be a probability in \[0, 1\], got 2.0"):
        mixing_config({"mixup_alpha": 0.2, "mixup_prob": 2})
    with pytest.raises(CnnZooError, match="augmentation.cutmix_alpha=1.0 applies to images only.*text"):
        check_mixing(mixing_config({"cutmix_alpha": 1.0}), "text")


def test_label_smoothing_and_mixup_train_with_soft_targets_and_validate_on_hard_labels(
    compose_cfg, mnist_root: Path
) -> None:
    switches = ("augmentation.mixup_alpha=0.4", "augmentation.cutmix_alpha=1.0", "model.loss.label_smoothing=0.1")
    cfg = compose_cfg(*mnist_overrides(mnist_root, *QUICK, "optimizer.lr=0", "fast=false", *switches))
    metrics = train(cfg)
    hparams = checkpoint(Path(cfg.paths.output_dir))["hyper_parameters"]
    assert hparams["label_smoothing"] == 0.1 and hparams["mixing"]["cutmix_alpha"] == 1.0
    # lr=0: the initial weights; validation's loss is the plain cross-entropy of the unmixed images
    torch.manual_seed(cfg.seed)
    datamodule = build_datamodule(cfg)
    model = Classifier.load_from_checkpoint(next((Path(cfg.paths.output_dir) / "checkpoints").glob("last.ckpt")))
    with torch.no_grad():
        batches = [(model(x), y) for x, y in datamodule.val_dataloader()]
    plain = sum(float(F.cross_entropy(logits, y, reduction="sum")) for logits, y in batches) / 60
    assert metrics["val/loss"] == pytest.approx(plain, rel=1e-5)
    # the training step: the batch mixed with torch's generator, the loss against the smoothed mixed targets
    x, y = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(3)
    with torch.no_grad():
        logits, loss = model.training_loss(x, y)
    torch.manual_seed(3)
    mixed, target = model.mixing(x, y)
    with torch.no_grad():
        assert torch.equal(logits, model(mixed))
    assert target.shape == (32, 10) and not torch.equal(target, F.one_hot(y, 10).float())
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, target, label_smoothing=0.1)), rel=1e-6)


def test_mixup_with_text_is_refused_in_one_line(compose_cfg, tmp_path: Path) -> None:
    data = make_imdb_archive(tmp_path / "data", per_class=8, test_per_class=4).parent
    cfg = compose_cfg(
        "data=imdb", f"paths.data_dir={data}", "data.max_len=20", "data.val_size=4", "data.batch_size=8",
        "data.num_words=100", *TINY_MODEL, *QUICK, "augmentation.mixup_alpha=0.2",
    )  # fmt: skip
    with pytest.raises(CnnZooError, match=r"^augmentation.mixup_alpha=0.2 applies to images only.*\(text\)"):
        train(cfg)


# ------------------------------------------------------------------ weight averaging
def test_ema_weights_differ_from_the_raw_ones_and_are_what_the_best_checkpoint_holds(
    compose_cfg, mnist_root: Path
) -> None:
    cfg = compose_cfg(*mnist_overrides(mnist_root, "logger=csv", "trainer.max_epochs=2", "callbacks.ema.decay=0.5"))
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    best = checkpoint(run, "epoch_*.ckpt")
    averaged, raw = best["state_dict"], best["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if k.startswith("net."))
    # the best checkpoint's weights (the average) give the validation accuracy it was chosen by, and the test
    model = Classifier.load_from_checkpoint(next((run / "checkpoints").glob("epoch_*.ckpt"))).eval()
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    with torch.no_grad():
        val = [(model(x).argmax(1) == y).float().sum() for x, y in datamodule.val_dataloader()]
        test = [(model(x).argmax(1) == y).float().sum() for x, y in datamodule.test_dataloader()]
    rows = (run / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    epoch_acc = [
        float(r.split(",")[header.index("val/acc")]) for r in rows[1:] if r.split(",")[header.index("val/acc")]
    ]
    assert float(sum(val)) / 60 == pytest.approx(epoch_acc[best["epoch"]], abs=1e-6)
    assert float(sum(test)) / 100 == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_before_the_average_starts_the_run_is_the_run_without_it(compose_cfg, mnist_root: Path, tmp_path: Path) -> None:
    """An average that has not started yet must not validate, save or restore the initial weights."""
    plain = compose_cfg(*mnist_overrides(mnist_root, "logger=none", "trainer.max_epochs=2"))
    later = compose_cfg(
        *mnist_overrides(mnist_root, "logger=none", "trainer.max_epochs=2", "callbacks.ema.decay=0.5"),
        "callbacks.ema.update_starting_at_step=100000",
    )
    with open_dict(later):
        later.paths.output_dir = str(tmp_path / "later")
    plain_metrics, later_metrics = train(plain), train(later)
    assert later_metrics["val/acc"] > 0.5 and later_metrics["test/acc"] > 0.5  # 10 classes: chance is 0.1
    assert later_metrics["test/acc"] == pytest.approx(plain_metrics["test/acc"], abs=1e-6)
    assert later_metrics["val/acc"] == pytest.approx(plain_metrics["val/acc"], abs=1e-6)
    plain_best = checkpoint(Path(plain.paths.output_dir), "epoch_*.ckpt")["state_dict"]
    later_best = checkpoint(tmp_path / "later", "epoch_*.ckpt")
    assert all(torch.equal(later_best["state_dict"][k], v) for k, v in plain_best.items())
    assert all(torch.equal(later_best["current_model_state"][k], v) for k, v in plain_best.items())


def test_bad_ema_decay_is_one_line(compose_cfg, mnist_root: Path) -> None:
    with pytest.raises(CnnZooError, match=r"callbacks.ema.decay must be in \(0, 1\) \(null: off\), got 1.5"):
        train(compose_cfg(*mnist_overrides(mnist_root, *QUICK, "callbacks.ema.decay=1.5")))


# ------------------------------------------------------------------ warmup and accumulation
@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_warmup_raises_the_rate_linearly_before_the_schedule(compose_cfg, mnist_root: Path, schedule: str) -> None:
    overrides = (f"scheduler={schedule}", "scheduler.warmup_epochs=2", "trainer.max_epochs=10", "optimizer.lr=0.01")
    cfg = compose_cfg(*mnist_overrides(mnist_root, *overrides))
    model = build_classifier(cfg, build_datamodule(cfg).spec)
    (optimizer,), (warmup, main) = model.configure_optimizers()
    assert warmup["name"] == "lr-warmup" and "warmup_epochs" not in main
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        warmup["scheduler"].step()
        main["scheduler"].step(1.0) if schedule == "plateau" else main["scheduler"].step()
    cosine = [0.5 * (1 + math.cos(math.pi * e / 10)) for e in range(4)] if schedule == "cosine" else [1.0] * 4
    assert rates == pytest.approx([0.01 * f * c for f, c in zip([0.1, 0.55, 1.0, 1.0], cosine, strict=True)])


def test_gradient_accumulation_fixed_and_scheduled_counts_optimizer_steps_across_a_resume(
    compose_cfg, mnist_root: Path, tmp_path: Path
) -> None:
    """8 batches an epoch: 4 steps with 2 batches a step; the schedule {0: 1, 1: 2} gives 8 then 4, a resume too."""
    cfg = compose_cfg(*mnist_overrides(mnist_root, *QUICK, "test=false", "trainer.accumulate_grad_batches=2"))
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    scheduled = ("logger=none", "test=false", "callbacks.accumulate_schedule.scheduling={0:1,1:2}")
    train(compose_cfg(*mnist_overrides(mnist_root, *scheduled, "trainer.max_epochs=1")))
    assert torch.load(last, weights_only=True)["global_step"] == 8
    train(compose_cfg(*mnist_overrides(mnist_root, *scheduled, "trainer.max_epochs=3", f"ckpt_path={last}")))
    assert torch.load(last, weights_only=True)["global_step"] == 16  # epochs 1 and 2 at 2 batches a step
    both = compose_cfg(*mnist_overrides(mnist_root, *scheduled, "trainer.accumulate_grad_batches=2"))
    with pytest.raises(CnnZooError, match="both set the accumulation: keep one"):
        train(both)


def test_run_with_ema_mixup_and_warmup_killed_mid_epoch_resumes_to_identical_metrics(
    mnist_root: Path, tmp_path: Path
) -> None:
    switches = [
        "callbacks.ema.decay=0.7", "augmentation.mixup_alpha=0.4", "augmentation.cutmix_alpha=1.0",
        "model.loss.label_smoothing=0.1", "scheduler=cosine", "scheduler.warmup_epochs=2",
    ]  # fmt: skip
    every = "callbacks.last_checkpoint.every_n_train_steps=3"
    args = [*MNIST, *QUIET, "trainer.max_epochs=3", "logger=none", every, *switches]
    whole, killed = kill_and_resume(mnist_root, tmp_path, args, kill_at=13)  # resumes mid-epoch 1, after step 12
    assert_same_run(whole, killed)
    state = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    whole_state = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.equal(state["current_model_state"][k], v) for k, v in whole_state["current_model_state"].items())
    assert "resuming mid-epoch 1 after its first 4 batches" in (killed / "train.log").read_text()


# ------------------------------------------------------------------ test-only, config tree, LR finder
def test_train_false_tests_a_checkpoint_through_the_train_pipeline(compose_cfg, mnist_root: Path) -> None:
    first = compose_cfg(*mnist_overrides(mnist_root, *QUICK))
    trained = train(first)
    best = next((Path(first.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt"))
    cfg = compose_cfg(*mnist_overrides(mnist_root, *QUICK, "train=false", f"ckpt_path={best}"))
    cfg.paths.output_dir = str(Path(first.paths.output_dir).parent / "tested")
    tested = train(cfg)
    assert tested == {k: v for k, v in trained.items() if k.startswith("test/")}
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text()) == tested
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()  # nothing trained
    with pytest.raises(CnnZooError, match="train=false tests a checkpoint: pass ckpt_path="):
        train(compose_cfg(*mnist_overrides(mnist_root, "train=false")))
    other = compose_cfg(*mnist_overrides(mnist_root, "train=false", f"ckpt_path={best}", "data.digits=[0,1]"))
    with pytest.raises(CnnZooError, match="classifies .* this data has"):
        train(other)


def test_print_config_prints_the_resolved_config_as_a_tree(compose_cfg, mnist_root: Path, capsys) -> None:
    cfg = compose_cfg(*mnist_overrides(mnist_root, *QUICK, "test=false", "extras.print_config=true"))
    train(cfg)
    out = capsys.readouterr().out
    assert "config" in out and "trainer" in out and "max_epochs: 1" in out
    assert "${" not in out  # resolved


@pytest.mark.parametrize(("apply", "suggestion"), [(True, "valley"), (False, "valley"), (True, "steepest")])
def test_lr_finder_sets_optimizer_lr_to_its_suggestion(
    compose_cfg, mnist_root: Path, apply: bool, suggestion: str
) -> None:
    finder = ("lr_find=true", "lr_finder.num_training=16", "lr_finder.early_stop_threshold=null")
    finder += (f"lr_finder.suggestion={suggestion}",)
    cfg = compose_cfg(*mnist_overrides(mnist_root, "logger=none", f"lr_finder.apply={apply}", *finder))
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    found = metrics["lr_find/lr"]
    assert json.loads((run / "metrics.json").read_text())["lr_find/lr"] == found
    assert (run / "lr_find.png").stat().st_size > 1000 and not list(run.glob(".lr_find_*"))
    state = checkpoint(run)
    expected = found if apply else 1e-3
    assert found != 1e-3 and state["hyper_parameters"]["optimizer"]["lr"] == expected
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(expected)  # no schedule here


def test_lr_finder_is_refused_where_it_cannot_run(compose_cfg, mnist_root: Path) -> None:
    with pytest.raises(CnnZooError, match="lr_find=true runs before training: it needs train=true"):
        train(compose_cfg(*mnist_overrides(mnist_root, "lr_find=true", "train=false", "ckpt_path=x.ckpt")))
    with pytest.raises(CnnZooError, match="lr_finder.suggestion must be one of valley, steepest, got 'fastest'"):
        train(compose_cfg(*mnist_overrides(mnist_root, "lr_find=true", "lr_finder.suggestion=fastest")))
    with pytest.raises(CnnZooError, match="lr_find=true runs in one process"):
        train(compose_cfg(*mnist_overrides(mnist_root, "lr_find=true", "trainer=ddp_cpu", "logger=none")))


# ------------------------------------------------------------------ compile
def inductor_works() -> str | None:
    """Why torch.compile's default (inductor) compiler cannot run here, or None."""
    try:
        torch.compile(lambda t: t * 2 + 1)(torch.ones(2))
    except Exception as err:  # no C++ compiler, an unsupported platform...
        return f"torch.compile (inductor) unusable here: {type(err).__name__}: {str(err).splitlines()[0]}"
    return None


def test_compile_and_eager_checkpoints_load_in_each_others_runs(compose_cfg, mnist_root: Path) -> None:
    if (reason := inductor_works()) is not None:
        pytest.skip(reason)
    from torch._dynamo.utils import counters

    # one compiled graph only: two training batches of 32, no validation, no test
    tiny = ("logger=none", "test=false", "trainer.limit_train_batches=2", "trainer.limit_val_batches=0", "fast=false")
    tiny += ("callbacks.early_stopping=null", "model.net.filters=[4,8]", "model.net.dense=[16]")
    eager = compose_cfg(*mnist_overrides(mnist_root, *tiny, "trainer.max_epochs=1"))
    train(eager)
    last = Path(eager.paths.output_dir) / "checkpoints" / "last.ckpt"
    eager_state = torch.load(last, weights_only=True)["state_dict"]
    counters.clear()
    train(compose_cfg(*mnist_overrides(mnist_root, *tiny, "trainer.max_epochs=2", "compile=true", f"ckpt_path={last}")))
    assert counters["stats"]["unique_graphs"] >= 1  # the compiled run went through dynamo
    compiled = torch.load(last, weights_only=True)
    assert compiled["global_step"] == 4 and compiled["state_dict"].keys() == eager_state.keys()
    assert not any("_orig_mod" in key for key in compiled["state_dict"])
    train(compose_cfg(*mnist_overrides(mnist_root, *tiny, "trainer.max_epochs=3", f"ckpt_path={last}")))
    assert torch.load(last, weights_only=True)["global_step"] == 6  # the eager run continued the compiled one


def test_bad_compile_value_is_one_line(compose_cfg, mnist_root: Path) -> None:
    with pytest.raises(CnnZooError, match="compile must be true, false or a torch.compile mode .*got 'fastest'"):
        train(compose_cfg(*mnist_overrides(mnist_root, "compile=fastest")))


def test_every_switch_is_in_trains_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cnn_zoo.train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    keys = ["lr_find:", "lr_finder:", "compile:", "print_config:", "label_smoothing:", "mixup_alpha:", "cutmix_alpha:"]
    keys += ["accumulate_grad_batches:", "ema:", "accumulate_schedule:", "train: true"]
    assert [key for key in keys if key not in result.stdout] == []


def test_run_with_gradient_accumulation_killed_mid_epoch_resumes_to_identical_metrics(
    mnist_root: Path, tmp_path: Path
) -> None:
    """2 batches a step, 4 steps an epoch, last.ckpt every 2 steps; killed before step 7: the newest checkpoint is
    the one after step 6 (epoch 1, 4 batches), not one taken inside the accumulation window after it."""
    every = "callbacks.last_checkpoint.every_n_train_steps=2"
    args = [*MNIST, *QUIET, "trainer.max_epochs=3", "logger=none", every, "trainer.accumulate_grad_batches=2"]
    whole, killed = kill_and_resume(mnist_root, tmp_path, args, kill_at=7)
    assert_same_run(whole, killed)
    assert "resuming mid-epoch 1 after its first 4 batches" in (killed / "train.log").read_text()
