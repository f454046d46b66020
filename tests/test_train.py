"""End-to-end training on the generated MNIST fixture: run folder, metrics, checkpoints, errors."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from cnn_zoo.train import train
from cnn_zoo.training.classifier import Classifier
from cnn_zoo.training.pipeline import build_classifier, build_datamodule
from tests.conftest import FAST, require_real, run_command


def mnist_overrides(root: Path, *extra: str) -> list[str]:
    return [
        f"paths.data_dir={root}",
        "data.download=false",
        "data.val_size=60",
        "data.batch_size=32",
        *FAST,
        *extra,
    ]


def test_training_writes_every_artifact_of_the_run_folder(mnist_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        f"hydra.run.dir={run_dir}",
        "data.download=false",
        "data.val_size=60",
        "trainer.max_epochs=2",
        "callbacks.rich_progress_bar=null",
        "logger=many",
    ]
    result = run_command("cnn_zoo.train", *args, data_dir=mnist_root)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Trainable params" in output and "Non-trainable params" in output  # Keras-style summary
    assert "Conv2d" in output and "[1, 10]" in output  # layers and output shapes
    assert f"run folder: {run_dir}" in output
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run_dir / "checkpoints").glob("epoch_*.ckpt"))) == 1
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert json.loads((run_dir / "data.json").read_text())["class_names"] == [str(d) for d in range(10)]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/acc_best", "test/acc", "test/loss", "val/loss", "train/loss"):
        assert key in metrics
    assert not [k for k in metrics if k.endswith(("_epoch", "_step")) or k.startswith("lr-")]  # each value once
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_loss_goes_down_and_best_checkpoint_reproduces_test_metrics(
    compose_cfg, mnist_root: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg(*mnist_overrides(mnist_root, "trainer.max_epochs=4", "logger=csv"))
    metrics = train(cfg)
    history = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()
    header = history[0].split(",")
    column = header.index("train/loss_epoch")
    losses = [float(row.split(",")[column]) for row in history[1:] if row.split(",")[column]]
    assert len(losses) == 4
    assert losses[-1] < 0.5 * losses[0]
    assert metrics["test/acc"] > 0.5

    best = next((tmp_path / "run" / "checkpoints").glob("epoch_*.ckpt"))
    raw = torch.load(best, weights_only=True)  # plain hyperparameters only
    assert raw["hyper_parameters"]["data"]["class_names"] == [str(d) for d in range(10)]
    model = Classifier.load_from_checkpoint(best)
    datamodule = build_datamodule(cfg)
    trainer = L.Trainer(  # the run's precision: bf16 on a CPU with bf16 units (`fast=auto`)
        accelerator="cpu", precision=cfg.trainer.precision, logger=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    (reloaded,) = trainer.test(model, datamodule=datamodule)
    assert reloaded["test/acc"] == pytest.approx(metrics["test/acc"])
    assert reloaded["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)


def test_each_epochs_metrics_are_that_epochs_predictions(compose_cfg, mnist_root: Path) -> None:
    """Training, validation and test loss and accuracy are logged once an epoch, from the epoch's own batches
    (lr=0: the same every epoch; sample means over batches of 32 and 28); the step loss only at the steps the
    logger writes (`log_every_n_steps`)."""
    overrides = ("model=lenet", "optimizer.lr=0", "logger=csv", "fast=false", "trainer.log_every_n_steps=3")
    cfg = compose_cfg(*mnist_overrides(mnist_root, *overrides))
    metrics = train(cfg)
    rows = [line.split(",") for line in (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]

    def column(name: str) -> list[tuple[int, float]]:
        at = header.index(name)
        return [(int(row[header.index("step")]), float(row[at])) for row in rows if row[at]]

    assert "train/acc_step" not in header and "train/f1_epoch" in header
    L.seed_everything(cfg.seed)  # as train() does: the initial weights, which lr=0 keeps
    datamodule = build_datamodule(cfg)
    model = build_classifier(cfg, datamodule.spec)

    def loss_and_accuracy(loader: torch.utils.data.DataLoader) -> tuple[float, float]:
        with torch.no_grad():
            batches = [(model(x), y) for x, y in loader]
        samples = len(loader.dataset)
        loss = sum(float(model.loss(logits, y)) * len(y) for logits, y in batches) / samples  # a sample mean
        return loss, sum(int((logits.argmax(1) == y).sum()) for logits, y in batches) / samples

    expected_loss, expected_acc = loss_and_accuracy(datamodule.train_dataloader())
    assert [acc for _, acc in column("train/acc_epoch")] == pytest.approx([expected_acc] * 2, abs=1e-6)
    assert [loss for _, loss in column("train/loss_epoch")] == pytest.approx([expected_loss] * 2, rel=1e-5)
    val_loss, val_acc = loss_and_accuracy(datamodule.val_dataloader())
    assert len(datamodule.val_dataloader()) == 2  # 60 images: 32 + 28
    assert [acc for _, acc in column("val/acc")] == pytest.approx([val_acc] * 2, abs=1e-6)
    assert [loss for _, loss in column("val/loss")] == pytest.approx([val_loss] * 2, rel=1e-5)
    datamodule.setup("test")
    test_loss, test_acc = loss_and_accuracy(datamodule.test_dataloader())
    assert (metrics["test/loss"], metrics["test/acc"]) == pytest.approx((test_loss, test_acc), rel=1e-5)
    steps = 2 * len(datamodule.train_dataloader())
    assert [step for step, _ in column("train/loss_step")] == [s for s in range(steps) if (s + 1) % 3 == 0]


def test_resume_continues_from_the_checkpoint_epoch(compose_cfg, mnist_root: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(*mnist_overrides(mnist_root, "trainer.max_epochs=1", "logger=none", "test=false"))
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 8  # 240 training images in batches of 32
    cfg = compose_cfg(
        *mnist_overrides(mnist_root, "trainer.max_epochs=2", "logger=none", "test=false", f"ckpt_path={last}")
    )
    train(cfg)
    assert torch.load(last, weights_only=True)["global_step"] == 16  # the second epoch only, not both again


def test_each_epoch_writes_last_ckpt_once_and_the_best_only_when_it_improves(
    compose_cfg, mnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monitoring checkpoint leaves last.ckpt to LatestCheckpoint: one write of each state, not two."""
    from cnn_zoo.callbacks import checkpointing

    written: list[str] = []
    write = checkpointing.write_atomic
    monkeypatch.setattr(
        checkpointing, "write_atomic", lambda path, content: (written.append(Path(path).name), write(path, content))
    )
    cfg = compose_cfg(*mnist_overrides(mnist_root, "trainer.max_epochs=3", "logger=none", "test=false"))
    train(cfg)
    assert written.count("last.ckpt") == 3
    best = [name for name in written if name.startswith("epoch_")]
    assert 1 <= len(best) <= 3 and len(written) == 3 + len(best)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == sorted({best[-1], "last.ckpt"})


def test_a_run_stopped_by_max_steps_before_its_first_validation_still_finishes(
    compose_cfg, mnist_root: Path, tmp_path: Path
) -> None:
    """Early stopping watches val/acc; a run whose step budget ends inside the first epoch has none to watch."""
    cfg = compose_cfg(*mnist_overrides(mnist_root, "+trainer.max_steps=3", "logger=none"))
    assert cfg.callbacks.early_stopping.monitor == "val/acc"
    metrics = train(cfg)
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_early_stopping_ends_the_run_after_its_patience_without_improvement(
    compose_cfg, mnist_root: Path, tmp_path: Path
) -> None:
    """An improvement of a whole point of accuracy never comes: the second epoch's validation stops the run."""
    overrides = ["trainer.max_epochs=4", "logger=none", "test=false", "callbacks.early_stopping.patience=0"]
    cfg = compose_cfg(*mnist_overrides(mnist_root, *overrides, "callbacks.early_stopping.min_delta=1.0"))
    train(cfg)
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 16


def test_missing_data_folder_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_command("cnn_zoo.train", f"hydra.run.dir={tmp_path / 'run'}", "data.download=false", data_dir=missing)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: MNIST not found:")
    assert str(missing / "MNIST" / "raw") in lines[-1]
    assert "CNN_ZOO_DATA_DIR" in lines[-1]
    assert "Traceback" not in result.stderr


def test_failed_download_names_what_was_tried(compose_cfg, tmp_path: Path, monkeypatch) -> None:
    import cnn_zoo.data.mnist as mnist_module

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(mnist_module, "MNIST", offline)
    cfg = compose_cfg(f"paths.data_dir={tmp_path / 'empty'}")
    from cnn_zoo.runtime.errors import CnnZooError

    with pytest.raises(CnnZooError, match="torchvision download failed .*network is unreachable"):
        build_datamodule(cfg)


def test_bad_config_value_is_a_user_error(compose_cfg, mnist_root: Path) -> None:
    from cnn_zoo.runtime.errors import CnnZooError

    cfg = compose_cfg(*mnist_overrides(mnist_root, "data.batch_size=0"))
    with pytest.raises(CnnZooError, match="data.batch_size must be a positive integer"):
        build_datamodule(cfg)


def test_classifier_builds_from_plain_config(compose_cfg, mnist_root: Path) -> None:
    cfg = compose_cfg(*mnist_overrides(mnist_root, "model=mnist_cnn"))
    model = build_classifier(cfg, build_datamodule(cfg).spec)
    assert sum(p.numel() for p in model.net.parameters()) == 93_322


def test_lightnings_hook_name_is_a_plain_attribute_and_modules_still_register(compose_cfg, mnist_root: Path) -> None:
    from torch import nn

    from cnn_zoo.training.classifier import HOOK_NAME_ATTRIBUTE

    cfg = compose_cfg(*mnist_overrides(mnist_root))
    model = build_classifier(cfg, build_datamodule(cfg).spec)
    setattr(model, HOOK_NAME_ATTRIBUTE, "training_step")
    assert model._current_fx_name == "training_step" and model.__dict__[HOOK_NAME_ATTRIBUTE] == "training_step"
    model.extra = nn.Linear(2, 2)  # everything else still goes through nn.Module's bookkeeping
    model.scale = nn.Parameter(torch.ones(1))
    assert "extra" in model._modules and "scale" in model._parameters
    assert {"extra.weight", "scale"} <= set(model.state_dict())


@pytest.mark.real_data
def test_lenet_one_epoch_on_real_mnist(compose_cfg) -> None:
    root = require_real("MNIST", "raw").parents[1]
    # 150 of the 430 batches of an epoch (19,200 digits) take LeNet to 95.9% test accuracy (a whole epoch: 98%)
    cfg = compose_cfg(
        f"paths.data_dir={root}", "data.download=false", *FAST, "trainer.max_epochs=1", "logger=none",
        "trainer.limit_train_batches=150",
    )  # fmt: skip
    metrics = train(cfg)
    assert metrics["test/acc"] >= 0.95


def test_same_seed_and_deterministic_trainer_give_identical_runs(compose_cfg, mnist_root: Path) -> None:
    overrides = mnist_overrides(mnist_root, "trainer.max_epochs=1", "logger=none", "trainer.deterministic=true")
    first = train(compose_cfg(*overrides))
    second = train(compose_cfg(*overrides))
    assert first["test/loss"] == second["test/loss"]
    other_seed = train(compose_cfg(*overrides, "seed=7"))
    assert other_seed["test/loss"] != first["test/loss"]


def test_mixed_precision_runs_on_cpu(compose_cfg, mnist_root: Path) -> None:
    cfg = compose_cfg(
        *mnist_overrides(mnist_root, "trainer.max_epochs=1", "logger=none", "trainer.precision=bf16-mixed")
    )
    metrics = train(cfg)
    assert metrics["test/loss"] > 0


def test_channels_last_changes_the_layout_not_the_function(compose_cfg, mnist_root: Path) -> None:
    cfg = compose_cfg(*mnist_overrides(mnist_root, "model=mnist_cnn"))
    spec = build_datamodule(cfg).spec
    torch.manual_seed(0)
    plain = build_classifier(cfg, spec).eval()
    nhwc = build_classifier(
        compose_cfg(*mnist_overrides(mnist_root, "model=mnist_cnn", "model.channels_last=true")), spec
    ).eval()
    nhwc.load_state_dict(plain.state_dict())
    conv = [m for m in nhwc.net.modules() if isinstance(m, torch.nn.Conv2d)][1].weight  # 32 input channels
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(plain(x), nhwc(x), atol=1e-5)


def test_bf16_channels_last_training_gives_a_float32_checkpoint_that_reloads(
    compose_cfg, mnist_root: Path, tmp_path: Path
) -> None:
    extra = ("trainer.max_epochs=2", "logger=none", "trainer.precision=bf16-mixed", "model.channels_last=true")
    metrics = train(compose_cfg(*mnist_overrides(mnist_root, *extra)))
    assert metrics["test/acc"] > 0.3  # 10 classes: it learned in bf16
    model = Classifier.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert model.hparams.channels_last and all(p.dtype == torch.float32 for p in model.parameters())
    assert model.probabilities(torch.zeros(2, 10, dtype=torch.bfloat16)).dtype == torch.float32
