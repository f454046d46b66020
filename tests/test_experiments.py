"""The course's cats/dogs experiments run end to end on a generated folder tree, with the settings they claim."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from cnn_zoo.train import train
from cnn_zoo.training.classifier import Classifier
from tests.conftest import FAST
from tests.fixtures import make_image_folder


@pytest.mark.parametrize("experiment", ["catsdogs_scratch", "catsdogs_aug"])
def test_catsdogs_experiment_keeps_the_epoch_with_the_best_validation_accuracy(
    compose_cfg, tmp_path: Path, experiment: str
) -> None:
    make_image_folder(tmp_path / "data" / "cats_and_dogs_small", layout="folders", per_class=16, odd_files=False)
    cfg = compose_cfg(
        f"experiment={experiment}",
        f"paths.data_dir={tmp_path / 'data'}",
        "data.image_size=80",
        "data.batch_size=8",
        "data.num_workers=0",
        "logger=csv",
        "callbacks.augmentation_preview=null",
        *FAST,
        "trainer.max_epochs=3",
    )
    metrics = train(cfg)
    assert {"test/acc", "test/acc_tta"} <= set(metrics)  # plain and hflip TTA side by side

    with open(tmp_path / "run" / "csv" / "metrics.csv") as handle:
        val_acc = [float(row["val/acc"]) for row in csv.DictReader(handle) if row.get("val/acc")]
    assert len(val_acc) == 3
    best_epoch = max(range(3), key=lambda e: (val_acc[e], -e))  # the first epoch reaching the maximum
    best = tmp_path / "run" / "checkpoints" / f"epoch_{best_epoch + 1:03d}.ckpt"  # named by the epoch counted from 1
    assert best.is_file()
    model = Classifier.load_from_checkpoint(best)
    norms = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 5 and all(int(n.num_batches_tracked) > 0 for n in norms)
    assert isinstance(model.net.head[-2], torch.nn.Dropout)


def test_the_sanity_check_on_batches_of_one_class_warns_nothing(compose_cfg, tmp_path: Path) -> None:
    """Lightning validates 2 batches before fitting; the validation folder is read class by class, so those hold
    only cats, and torchmetrics warned about the missing class at every cats/dogs run's start."""
    import warnings

    make_image_folder(tmp_path / "data" / "cats_and_dogs_small", layout="folders", per_class=16, odd_files=False)
    cfg = compose_cfg(
        "experiment=catsdogs_scratch",
        f"paths.data_dir={tmp_path / 'data'}",
        "data.image_size=80",
        "data.batch_size=2",
        "data.num_workers=0",
        "logger=none",
        "test=false",
        "callbacks.augmentation_preview=null",
        *FAST,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "+trainer.num_sanity_val_steps=2",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(cfg)
    missing = [str(w.message) for w in caught if "samples in targets" in str(w.message)]
    assert missing == [] and 0.0 <= metrics["val/acc"] <= 1.0
