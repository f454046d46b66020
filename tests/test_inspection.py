"""What a run shows in TensorBoard: read back from the event files with tensorboard's EventAccumulator."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from cnn_zoo.callbacks.inspection import (
    AugmentationPreview,
    ConfusionMatrixImage,
    TopLosses,
    displayable,
    flatten,
    predictions,
)
from cnn_zoo.data.spec import DataSpec, ImagePreprocessing, TextPreprocessing
from cnn_zoo.interpretation.toplosses import most_confused, sample_losses, top_losses
from cnn_zoo.train import train
from tests.conftest import FAST


def read_events(log_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def hparams_data(accumulator: EventAccumulator, tag: str) -> plugin_data_pb2.HParamsPluginData:
    return plugin_data_pb2.HParamsPluginData.FromString(accumulator.PluginTagToContent("hparams")[tag])


def test_run_logs_curves_images_and_hparams_with_final_metrics(compose_cfg, mnist_root: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        f"paths.data_dir={mnist_root}", "data.download=false", "data.val_size=60", "data.batch_size=32",
        "model=mnist_cnn", "optimizer.lr=3e-4", *FAST,
    )  # fmt: skip
    metrics = train(cfg)
    events = read_events(tmp_path / "run" / "tensorboard")
    tags = events.Tags()

    for tag in ("train/loss_epoch", "train/acc_epoch", "val/acc", "val/loss", "test/acc", "lr-Adam", "epoch"):
        assert tag in tags["scalars"], tag
    assert len(events.Scalars("val/acc")) == 2  # one point per epoch
    assert [e.value for e in events.Scalars("lr-Adam")] == pytest.approx([3e-4, 3e-4])
    assert not [t for t in tags["scalars"] if t.startswith("final/")]  # the HParams tab reads the logged tags
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])
    layout = events.PluginTagToContent("custom_scalars")  # training and validation on shared charts
    assert layout and "train/loss_epoch" in str(events.Tensors("custom_scalars__config__")[-1].tensor_proto)

    assert {"test/confusion_matrix", "train/augmentation_preview"} <= set(tags["images"])
    preview = events.Images("train/augmentation_preview")[-1]
    assert (preview.width, preview.height) == (8 * 30 + 2, 4 * 30 + 2)  # 32 images of 28 px, 8 a row, 2 px apart
    assert ("test/top_losses" in tags["images"]) == (metrics["test/acc"] < 1.0)
    assert "test/most_confused/text_summary" in tags["tensors"]
    run = tmp_path / "run"
    assert (run / "top_losses.png").exists() == (metrics["test/acc"] < 1.0)
    confused = (run / "most_confused.md").read_text().splitlines()
    wrong = round((1 - metrics["test/acc"]) * 100)  # 100 generated test digits
    counts = [int(line.split("|")[3]) for line in confused[4:] if line.startswith("| ") and "no mistakes" not in line]
    assert sum(counts) == wrong and counts == sorted(counts, reverse=True)

    start = hparams_data(events, "_hparams_/session_start_info").session_start_info
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(3e-4)
    assert start.hparams["model.net._target_"].string_value == "cnn_zoo.models.small_cnn.SmallCNN"
    experiment = hparams_data(events, "_hparams_/experiment").experiment
    metric_tags = {info.name.tag for info in experiment.metric_infos}
    assert {"test/acc", "val/acc_best", "test/loss", "train/loss_epoch"} <= metric_tags
    assert metric_tags <= set(tags["scalars"])  # every HParams metric is a logged curve, none written twice


def fake_trainer(tmp_path: Path) -> SimpleNamespace:
    logger = TensorBoardLogger(str(tmp_path), name="tb", version="")
    return SimpleNamespace(
        is_global_zero=True, loggers=[logger], global_step=3, ckpt_path=None, logger=logger, default_root_dir=tmp_path
    )


def fake_module(kind: str = "image", class_names: tuple[str, ...] = ("neg", "pos"), vocab: tuple[str, ...] = (),
                **_: object) -> SimpleNamespace:
    """A module whose checkpointed data is a real `DataSpec` (4x4 RGB images, or 5-token texts over `vocab`)."""
    prep = ImagePreprocessing(size=(4, 4)) if kind == "image" else TextPreprocessing(vocab=tuple(vocab), max_len=5)
    shape, dtype = ((3, 4, 4), "float32") if kind == "image" else ((5,), "int64")
    spec = DataSpec(kind=kind, class_names=tuple(class_names), input_shape=shape, input_dtype=dtype, preprocessing=prep)
    return SimpleNamespace(hparams={"data": spec.to_dict()}, device=torch.device("cpu"))


def test_binary_confusion_matrix_counts_thresholded_probabilities(tmp_path: Path) -> None:
    trainer, module = fake_trainer(tmp_path), fake_module(kind="image", num_classes=2, class_names=["cat", "dog"])
    callback = ConfusionMatrixImage()
    callback.on_test_epoch_start(trainer, module)
    outputs = {"probs": torch.tensor([0.9, 0.2, 0.6, 0.4, 0.1]), "target": torch.tensor([1, 0, 0, 1, 0])}
    callback.on_test_batch_end(trainer, module, outputs, None, 0)
    callback.on_test_epoch_end(trainer, module)
    assert callback.last.tolist() == [[2, 1], [1, 1]]  # rows: true cat, true dog
    saved = json.loads((tmp_path / "confusion_matrix.json").read_text())  # what the run page draws
    assert saved == {"class_names": ["cat", "dog"], "matrix": [[2, 1], [1, 1]], "tested": "final weights"}
    trainer.loggers[0].experiment.flush()
    assert "test/confusion_matrix" in read_events(tmp_path / "tb").Tags()["images"]


def test_top_losses_text_decodes_the_vocabulary_and_skips_without_one(tmp_path: Path) -> None:
    vocab = ["<pad>", "<unk>", "a", "dull", "film", "great"]
    batch = (torch.tensor([[2, 5, 4, 0, 0], [2, 3, 4, 0, 0]]), torch.tensor([0, 0]))
    outputs = {"probs": torch.tensor([0.8, 0.3]), "target": batch[1]}  # the first review is misread as positive

    without = TopLosses(write_files=False)
    trainer = fake_trainer(tmp_path / "without")
    module = fake_module(kind="text", num_classes=2, class_names=["neg", "pos"])
    without.on_test_epoch_start(trainer, module)
    without.on_test_batch_end(trainer, module, outputs, batch, 0)
    without.on_test_epoch_end(trainer, module)  # no vocabulary: a table without openings, no error
    trainer.loggers[0].experiment.flush()
    assert "test/top_losses/text_summary" in read_events(tmp_path / "without" / "tb").Tags()["tensors"]

    callback = TopLosses(words=10, heatmaps=False)  # a fake module has no convolution for Grad-CAM
    trainer = fake_trainer(tmp_path / "with")
    trainer.default_root_dir = str(tmp_path / "run")
    module = fake_module(kind="text", num_classes=2, class_names=["neg", "pos"], vocab=vocab)
    callback.on_test_epoch_start(trainer, module)
    callback.on_test_batch_end(trainer, module, outputs, batch, 0)
    callback.on_test_epoch_end(trainer, module)
    table = (tmp_path / "run" / "top_losses.md").read_text().splitlines()
    assert table[-1] == f"| 1 | 0 | neg | pos | 0.800 | {-np.log(0.2):.3f} | a great film |"
    assert (tmp_path / "run" / "most_confused.md").read_text().splitlines()[-1] == "| neg | pos | 1 | 50.00% |"
    reviews = (tmp_path / "run" / "top_losses.html").read_text()  # the run page's highlighted reviews
    assert "1. test sample 0: neg read as pos" in reviews and ">great</span>" in reviews
    assert "&lt;pad&gt;" not in reviews
    trainer.loggers[0].experiment.flush()
    tags = read_events(tmp_path / "with" / "tb").Tags()["tensors"]
    assert {"test/top_losses/text_summary", "test/most_confused/text_summary"} <= set(tags)


def test_top_losses_are_the_most_confident_mistakes_in_loss_order_across_batches(tmp_path: Path) -> None:
    trainer, module = fake_trainer(tmp_path), fake_module(kind="image", num_classes=3, class_names=["a", "b", "c"])
    trainer.default_root_dir = str(tmp_path / "run")
    callback = TopLosses(max_samples=3, heatmaps=False)
    callback.on_test_epoch_start(trainer, module)
    batches = [
        torch.tensor([[0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.3, 0.3, 0.4]]),  # wrong (p=0.1), right, wrong (p=0.3)
        torch.tensor([[0.02, 0.03, 0.95], [0.6, 0.2, 0.2], [0.2, 0.5, 0.3]]),  # wrong (p=0.02), wrong (p=0.2), right
    ]
    targets = [torch.tensor([0, 0, 0]), torch.tensor([0, 1, 1])]
    for step, (probs, target) in enumerate(zip(batches, targets, strict=True)):
        images = torch.full((3, 3, 4, 4), float(step)) + torch.arange(3).view(3, 1, 1, 1) / 10  # identifies the sample
        callback.on_test_batch_end(trainer, module, {"probs": probs, "target": target}, (images, target), step)
    assert [m.index for m in callback.mistakes] == [3, 0, 4]  # loss -log(0.02) > -log(0.1) > -log(0.2) > -log(0.3)
    losses = [m.loss for m in callback.mistakes]
    assert losses == sorted(losses, reverse=True) and losses[0] == pytest.approx(-np.log(0.02))
    assert [float(callback.inputs[i][0, 0, 0]) for i in (3, 0, 4)] == pytest.approx([1.0, 0.0, 1.1])
    assert [(m.target, m.predicted) for m in callback.mistakes] == [(0, 2), (0, 1), (1, 0)]
    callback.on_test_epoch_end(trainer, module)
    assert (tmp_path / "run" / "top_losses.png").read_bytes()[:4] == b"\x89PNG"
    trainer.loggers[0].experiment.flush()
    assert "test/top_losses" in read_events(tmp_path / "tb").Tags()["images"]
    confused = (tmp_path / "run" / "most_confused.md").read_text().splitlines()[4:]
    assert confused == ["| a | c | 2 | 33.33% |", "| a | b | 1 | 16.67% |", "| b | a | 1 | 16.67% |"]


def test_top_loss_helpers_binary_and_multiclass() -> None:
    binary = torch.tensor([0.9, 0.2, 0.6, 0.01])  # P(class 1)
    target = torch.tensor([0, 0, 1, 1])
    expected = [-np.log(0.1), -np.log(0.8), -np.log(0.6), -np.log(0.01)]
    assert sample_losses(binary, target).tolist() == pytest.approx(expected)
    assert [(m.index, m.predicted) for m in top_losses(binary, target, 5)] == [(3, 0), (0, 1)]  # only the mistakes
    assert top_losses(binary, target, 1)[0].probability == pytest.approx(0.99)
    pairs = most_confused(torch.tensor([1, 1, 2, 0, 2]), torch.tensor([0, 0, 0, 0, 1]))
    assert pairs == [(0, 1, 2), (0, 2, 1), (1, 2, 1)]
    assert most_confused(torch.tensor([1, 1, 2]), torch.tensor([0, 0, 0]), min_count=2) == [(0, 1, 2)]


def test_augmentation_preview_ignores_non_image_batches(tmp_path: Path) -> None:
    trainer = fake_trainer(tmp_path)
    callback = AugmentationPreview()
    callback.on_train_batch_start(trainer, fake_module(kind="text"), (torch.ones(4, 20, dtype=torch.long),), 0)
    trainer.loggers[0].experiment.flush()
    assert not read_events(tmp_path / "tb").Tags()["images"]


def test_helpers_undo_normalisation_and_flatten_configs() -> None:
    facts = {"mean": [0.5, 0.25, 0.0], "std": [0.5, 0.25, 1.0]}
    prep = ImagePreprocessing(size=(4, 4), normalization="imagenet", mean=tuple(facts["mean"]), std=tuple(facts["std"]))
    spec = DataSpec("image", ("a", "b"), input_shape=(3, 4, 4), input_dtype="float32", preprocessing=prep)
    original = torch.rand(2, 3, 4, 4)
    normalised = (original - torch.tensor(facts["mean"]).view(1, 3, 1, 1)) / torch.tensor(facts["std"]).view(1, 3, 1, 1)
    assert torch.allclose(displayable(normalised, spec.to_dict()), original, atol=1e-6)
    assert predictions(torch.tensor([0.2, 0.7])).tolist() == [0, 1]
    assert predictions(torch.tensor([[0.1, 0.7, 0.2]])).tolist() == [1]
    assert flatten({"optimizer": {"lr": 1e-3, "betas": [0.9, 0.99]}, "seed": 1}) == {
        "optimizer.lr": 1e-3,
        "optimizer.betas": "[0.9, 0.99]",
        "seed": 1,
    }
