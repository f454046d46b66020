"""The folder-per-class datamodule: both layouts, class order, odd image modes, bad files, split, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_zoo.data.image_folder import ImageFolderDataModule
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.training.pipeline import build_datamodule
from tests.conftest import require_real
from tests.fixtures import make_image_folder


def datamodule(root: Path, **kwargs) -> ImageFolderDataModule:
    settings = {"data_dir": str(root.parent), "folder": root.name, "image_size": 32, "num_workers": 0, **kwargs}
    dm = ImageFolderDataModule(**settings)
    dm.setup("fit")
    return dm


def paths(dataset) -> set[Path]:
    return {path for path, _ in dataset.samples}


def test_folder_layout_maps_sorted_classes_and_converts_every_mode(tmp_path: Path, caplog) -> None:
    root = make_image_folder(tmp_path / "pets", classes=("dogs", "cats"), layout="folders")
    with caplog.at_level(logging.WARNING):
        dm = datamodule(root)
    assert list(dm.spec.class_names) == ["cats", "dogs"]  # sorted, as flow_from_directory
    assert list(dm.spec.input_shape) == [3, 32, 32] and list(dm.spec.preprocessing.mean) == [0.0, 0.0, 0.0]
    # the odd files go to the first class given (dogs): 24 generated + gray, rgba, palette, cmyk;
    # corrupt.jpg skipped, notes.txt ignored
    assert dm.spec.stats.split_sizes == {"train": 52, "val": 24, "test": 24}
    assert list(dm.spec.stats.class_counts) == [24, 28]
    names = {path.name for path in paths(dm.train_set)}
    assert {"gray.png", "rgba.png", "palette.gif", "cmyk.jpg"} <= names
    assert "corrupt.jpg" not in names and "notes.txt" not in names
    for path, label in dm.train_set.samples:
        assert label == (0 if path.parent.name == "cats" else 1)
    for index in range(len(dm.train_set)):
        x, _ = dm.train_set[index]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and x.min() >= 0.0 and x.max() <= 1.0
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and str(root / "train" / "dogs" / "corrupt.jpg") in warnings[0]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and y.dtype == torch.int64


def test_test_stage_decodes_the_test_split_only(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", odd_files=False)
    dm = ImageFolderDataModule(data_dir=str(tmp_path), folder="pets", image_size=16, num_workers=0)
    dm.setup("test")
    assert dm.train_set is None and dm.val_set is None and len(dm.test_set) == 24
    assert dm.spec.stats.class_counts is None
    test_set = dm.test_set
    dm.setup("fit")
    assert len(dm.train_set) == 48 and len(dm.val_set) == 24 and dm.test_set is test_set
    assert list(dm.spec.stats.class_counts) == [24, 24]
    assert root.is_dir()


def test_grayscale_image_becomes_three_equal_channels(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders")
    dm = datamodule(root, image_size=16)
    index = [path.name for path in [p for p, _ in dm.train_set.samples]].index("gray.png")
    x, _ = dm.train_set[index]
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_validation_split_is_disjoint_stratified_and_seeded(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="split", per_class=40, odd_files=False)
    dm = datamodule(root, val_size=0.25, seed=1)
    train, val = paths(dm.train_set), paths(dm.val_set)
    assert not train & val
    assert train | val == set(root.rglob("img_*"))
    assert np.bincount([label for _, label in dm.val_set.samples]).tolist() == [10, 10]
    assert dm.test_set is dm.val_set  # no test folder: test on validation
    assert paths(datamodule(root, val_size=0.25, seed=1).val_set) == val
    assert paths(datamodule(root, val_size=0.25, seed=2).val_set) != val


def test_test_split_holds_out_a_third_disjoint_subset(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="split", per_class=40, odd_files=False)
    dm = datamodule(root, val_size=0.25, test_size=0.25)
    train, val, test = paths(dm.train_set), paths(dm.val_set), paths(dm.test_set)
    assert not (train & val or train & test or val & test)
    assert (len(train), len(val), len(test)) == (40, 20, 20)


def test_bad_file_is_fatal_when_asked(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders")
    with pytest.raises(CnnZooError, match=r"unreadable image .*corrupt\.jpg .*data.on_bad_file=skip"):
        datamodule(root, on_bad_file="error")


def test_uncached_mode_verifies_files_and_survives_a_truncated_one(tmp_path: Path, caplog) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders")
    big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(root / "train" / "dogs" / "truncated.jpg", quality=95)
    whole = (root / "train" / "dogs" / "truncated.jpg").read_bytes()
    (root / "train" / "dogs" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])  # header passes verify()
    dm = datamodule(root, cache=False, batch_size=8)
    assert dm.train_set.cache is None
    with caplog.at_level(logging.WARNING):
        seen = sum(len(y) for _, y in dm.train_dataloader())  # a whole epoch, no exception
    assert seen == len(dm.train_set)
    assert any("truncated.jpg" in r.getMessage() for r in caplog.records)


def test_missing_folder_is_one_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(CnnZooError, match=r"image folder not found: .*nowhere\. Set CNN_ZOO_DATA_DIR"):
        datamodule(tmp_path / "nowhere")


def test_folder_without_class_subfolders_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "a.png")
    with pytest.raises(CnnZooError, match=r"no class sub-folders with images in .*flat: expected"):
        datamodule(root, val_size=0.2)


def test_one_folder_needs_a_validation_split(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="split", odd_files=False)
    with pytest.raises(CnnZooError, match="set data.val_size"):
        datamodule(root)


def test_validation_folder_classes_must_match_training(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", odd_files=False)
    (root / "validation" / "birds").mkdir()
    Image.new("RGB", (8, 8)).save(root / "validation" / "birds" / "b.png")
    with pytest.raises(CnnZooError, match=r"class folders \['birds'\] that the training folder lacks"):
        datamodule(root)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"image_size": 0}, "data.image_size must be an integer >= 8"),
        ({"image_size": [32, 32, 3]}, "data.image_size must be an integer >= 8"),
        ({"normalization": "zscore"}, "data.normalization must be one of"),
        ({"val_size": 1.5}, r"data.val_size must be a fraction in \[0, 1\)"),
        ({"val_size": 0.5, "test_size": 0.5}, "must leave files for training"),
        ({"on_bad_file": "ignore"}, "data.on_bad_file must be 'skip' or 'error'"),
        ({"batch_size": 0}, "data.batch_size must be a positive integer"),
    ],
)
def test_bad_values_are_user_errors(tmp_path: Path, setting: dict, message: str) -> None:
    with pytest.raises(CnnZooError, match=message):
        ImageFolderDataModule(data_dir=str(tmp_path), **setting)


def test_catsdogs_config_builds_through_the_pipeline(compose_cfg, tmp_path: Path, caplog) -> None:
    make_image_folder(tmp_path / "data" / "cats_and_dogs_small", layout="folders")
    cfg = compose_cfg("data=catsdogs", f"paths.data_dir={tmp_path / 'data'}", "data.image_size=40")
    with caplog.at_level(logging.INFO):
        dm = build_datamodule(cfg)
    assert any("classes: {0: 'cats', 1: 'dogs'}" in r.getMessage() for r in caplog.records)
    assert list(dm.spec.preprocessing.size) == [40, 40]
    assert dm.spec.datamodule["_target_"] == "cnn_zoo.data.image_folder.ImageFolderDataModule"


def test_bad_value_from_the_command_line_is_one_line(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("data=catsdogs", f"paths.data_dir={tmp_path}", "data.normalization=zscore")
    with pytest.raises(CnnZooError, match="data.normalization must be one of"):
        build_datamodule(cfg)


@pytest.mark.real_data
def test_real_cats_and_dogs_small_layout() -> None:
    root = require_real("cats_and_dogs_small")
    dm = ImageFolderDataModule(data_dir=str(root.parent), image_size=32, num_workers=2)
    dm.setup()
    assert list(dm.spec.class_names) == ["cats", "dogs"]
    assert dm.spec.stats.split_sizes == {"train": 2000, "val": 1000, "test": 1000}
    assert list(dm.spec.stats.class_counts) == [1000, 1000]
