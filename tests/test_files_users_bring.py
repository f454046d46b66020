"""Files users bring: grayscale/RGBA image folders, header-less and semicolon CSVs with timestamps and text
labels, and the deprecated option names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cnn_zoo.data.image_folder import ImageFolderDataModule
from cnn_zoo.data.telemetry import TelemetryDataModule
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.train import train
from cnn_zoo.training.inference import load_classifier
from tests.conftest import FAST
from tests.fixtures import make_digit_folder, make_image_folder
from tests.fixtures_sequences import telemetry_frame, write_csv, write_sensor_csv

NAMES = ["nominal", "point", "contextual"]
SENSOR = ["data.header=false", "data.column_names=[time,f0,f1,f2,f3,state]", "data.drop_columns=[time]",
          "data.label_column=state", f"data.class_names=[{','.join(NAMES)}]"]  # fmt: skip


def test_grayscale_folder_trains_lenet_as_one_channel_end_to_end(compose_cfg, tmp_path: Path) -> None:
    root = make_digit_folder(tmp_path / "digits")
    cfg = compose_cfg(
        "data=image_folder", f"paths.data_dir={tmp_path}", "data.folder=digits", "data.color_mode=grayscale",
        "data.image_size=28", "data.num_workers=0", "data.batch_size=8", "model=lenet", "model.net.filters=[4,8]",
        "model.net.dense=[16]", *FAST, "trainer.max_epochs=4", "logger=none", "optimizer.lr=3e-3",
    )  # fmt: skip
    metrics = train(cfg)
    model = load_classifier(next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")))
    assert model.spec.input_shape == (1, 28, 28) and model.net.features[0].in_channels == 1
    x = model.spec.preprocessing.transform()(model.spec.preprocessing.transform().decode(root / "test/1/0006.png"))
    assert x.shape == (1, 28, 28)
    assert metrics["test/acc"] > 0.6  # three learnable classes


@pytest.mark.parametrize(("mode", "channels"), [("grayscale", 1), ("rgba", 4), ("rgb", 3)])
def test_color_mode_sets_the_channels_of_every_image(tmp_path: Path, mode: str, channels: int) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=4)
    dm = ImageFolderDataModule(data_dir=str(tmp_path), folder="pets", image_size=16, color_mode=mode, num_workers=0)
    dm.setup("fit")
    assert dm.spec.input_shape == (channels, 16, 16) and dm.train_set[0][0].shape == (channels, 16, 16)
    assert len(dm.spec.preprocessing.mean) == channels and root.is_dir()


def test_bad_color_mode_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CnnZooError, match=r"data.color_mode must be one of \['grayscale', 'rgb', 'rgba'\]"):
        ImageFolderDataModule(data_dir=str(tmp_path), folder="x", color_mode="cmyk")


def sensor_files(root: Path) -> dict[str, Path]:
    anomalies = tuple((s, s + 30, 1 + (i % 2)) for i, s in enumerate(range(40, 560, 80)))
    return {
        part: write_sensor_csv(root / f"{part}.csv", telemetry_frame(600, anomalies=anomalies, seed=i), NAMES)
        for i, part in enumerate(("train", "val", "test"))
    }


def test_headerless_semicolon_sensor_files_train_with_command_line_options_only(compose_cfg, tmp_path: Path) -> None:
    files = sensor_files(tmp_path)
    cfg = compose_cfg(
        "data=telemetry", f"data.train_path={files['train']}", f"data.val_path={files['val']}",
        f"data.test_path={files['test']}", *SENSOR, "data.window=16", "model=conv1d_telemetry",
        "model.net.filters=[16,16]", *FAST, "trainer.max_epochs=3", "logger=none",
    )  # fmt: skip
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.5
    model = load_classifier(next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")))
    prep = model.spec.preprocessing
    assert prep.feature_names == ("f0", "f1", "f2", "f3") and model.spec.class_names == tuple(NAMES)
    assert prep.reading["header"] is False and prep.reading["column_names"][0] == "time"


def test_delimiter_is_sniffed_and_columns_are_chosen_by_position(tmp_path: Path) -> None:
    write_sensor_csv(tmp_path / "s.csv", telemetry_frame(200, anomalies=((50, 90, 1),)), NAMES, sep="\t")
    dm = TelemetryDataModule(
        data_dir=str(tmp_path), path="s.csv", header=False, feature_columns=[1, 2], label_column=-1,
        class_names=NAMES, mode="row",
    )  # fmt: skip
    dm.setup()
    assert dm.spec.preprocessing.feature_names == ("1", "2") and dm.spec.num_classes == 2


@pytest.mark.parametrize(
    ("line", "settings", "message"),
    [
        ("2026-01-01T00:00:07;0.1;0;1;0;broken", {}, r"s.csv: label column 'state', line 8: 'broken' is not one of"),
        ("2026-01-01T00:00:07;abc;0;1;0;nominal", {}, r"s.csv: column 'f0', line 8: 'abc' is not a number"),
        (None, {"column_names": ["a", "b"]}, r"s.csv has 6 columns \(delimiter ';'\) but data.column_names names 2"),
        (None, {"drop_columns": ["when"]}, r"s.csv has no column 'when' for data.drop_columns"),
        (None, {"drop_columns": [], "label_column": 9}, r"s.csv: data.label_column=9 is out of range"),
        (None, {"drop_columns": []}, r"s.csv: column 'time', line 1: '2026-01-01T00:00:00' is not a number"),
    ],
)
def test_csv_problems_name_file_line_and_column(tmp_path: Path, line, settings: dict, message: str) -> None:
    path = write_sensor_csv(tmp_path / "s.csv", telemetry_frame(40, anomalies=((10, 20, 1),)), NAMES)
    if line:
        rows = path.read_text().splitlines()
        rows[7] = line
        path.write_text("\n".join(rows) + "\n")
    options = {"header": False, "column_names": ["time", "f0", "f1", "f2", "f3", "state"], "drop_columns": ["time"],
               "label_column": "state", "class_names": NAMES, "window": 8} | settings  # fmt: skip
    with pytest.raises(CnnZooError, match=message) as err:
        TelemetryDataModule(data_dir=str(tmp_path), path="s.csv", **options).setup()
    assert "\n" not in str(err.value)


def test_text_labels_without_class_names_say_how_to_name_them(tmp_path: Path) -> None:
    write_sensor_csv(tmp_path / "s.csv", telemetry_frame(40, anomalies=((10, 20, 1),)), NAMES, sep=",")
    with pytest.raises(CnnZooError, match=r"line 1: 'nominal' is not a class index; name the classes"):
        TelemetryDataModule(data_dir=str(tmp_path), path="s.csv", header=False, drop_columns=[0], window=8).setup()


def test_old_option_names_still_work_with_a_deprecation_message(tmp_path: Path, caplog) -> None:
    write_csv(tmp_path / "x.csv", telemetry_frame(300, anomalies=((100, 160, 1),)))
    with caplog.at_level(logging.WARNING):
        dm = TelemetryDataModule(
            data_dir=str(tmp_path), path="x.csv", mode="row", val_fraction=0.3, standardize=False, split="chronological"
        )
        dm.setup()
    assert "data.val_fraction is deprecated and will be removed: use data.val_size=0.3" in caplog.text
    assert "data.standardize is deprecated and will be removed: use data.normalization=none" in caplog.text
    assert abs(dm.spec.stats.split_sizes["val"] - 90) <= 1 and dm.spec.preprocessing.mean == (0.0,) * 4
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ImageFolderDataModule(data_dir=str(tmp_path), folder="x", validation_split=0.3)
    assert "data.validation_split is deprecated and will be removed: use data.val_size=0.3" in caplog.text
