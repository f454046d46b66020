"""Telemetry CSVs: row and window samples, splits without straddling windows, train-only scaler, errors, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cnn_zoo.data.spec import DataSpec
from cnn_zoo.data.telemetry import Segment, TelemetryDataModule, Windows, as_arrays, split_segments
from cnn_zoo.evaluate import evaluate
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.train import train
from cnn_zoo.training.inference import load_classifier
from tests.conftest import FAST, require_real
from tests.fixtures_sequences import make_channel, telemetry_frame, write_csv

CHANNEL = ["C-1_train.csv", "C-1_test.csv"]


@pytest.fixture
def channel(tmp_path: Path) -> Path:
    return make_channel(tmp_path / "data")


def counter_csv(path: Path, n_rows: int = 200, labels: np.ndarray | None = None) -> Path:
    """f0 = the row index (so a sample tells which rows it holds), f1 = its square root, label given or alternating."""
    frame = pd.DataFrame({"f0": np.arange(n_rows, dtype=float), "f1": np.sqrt(np.arange(n_rows))})
    frame["label"] = labels if labels is not None else (np.arange(n_rows) // 20) % 2
    return write_csv(path, frame)


# ---------------------------------------------------------------------- samples
def test_row_mode_is_the_notes_reshape_to_one_channel(channel: Path) -> None:
    dm = TelemetryDataModule(data_dir=str(channel), path=CHANNEL, mode="row")
    dm.setup()
    x, y = dm.train_set[0]
    assert x.shape == (1, 4) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert list(dm.spec.input_shape) == [1, 4] and dm.spec.in_channels == 1
    assert sum(dm.spec.stats.split_sizes.values()) == 1500  # every row, once
    assert list(dm.spec.class_names) == ["0", "1", "2"] and len(list(dm.spec.stats.class_counts)) == 3


def test_window_labels_by_last_step_or_by_any_anomaly() -> None:
    labels = np.array([0, 0, 2, 2, 0, 0, 1, 0])
    piece = Segment(np.arange(8, dtype=np.float32)[:, None], labels, "mem")
    last = Windows([piece], window=3, stride=1, rule="last")
    anyone = Windows([piece], window=3, stride=1, rule="any")
    # windows start at 0..5: rows 0-2, 1-3, 2-4, 3-5, 4-6, 5-7
    assert last.labels.tolist() == [2, 2, 0, 0, 1, 0]
    assert anyone.labels.tolist() == [2, 2, 2, 2, 1, 1]
    assert last[4][0].tolist() == [[4.0, 5.0, 6.0]]  # (features, window)
    assert len(Windows([piece], window=3, stride=2, rule="last")) == 3


@pytest.mark.parametrize("split", ["stratified", "chronological"])
def test_windows_never_straddle_split_boundaries(tmp_path: Path, split: str) -> None:
    path = counter_csv(tmp_path / "series.csv", 400)
    dm = TelemetryDataModule(data_dir=str(tmp_path), path="series.csv", window=8, split=split, normalization="none")
    dm.setup()
    rows = {}
    for name, dataset in (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set)):
        x, _ = as_arrays(dataset)
        steps = x[:, 0, :]  # f0 = row index
        assert (np.diff(steps, axis=1) == 1).all()  # each window is consecutive rows of one piece
        rows[name] = set(steps.astype(int).flatten().tolist())
    assert not (rows["train"] & rows["val"]) and not (rows["train"] & rows["test"]) and not (rows["val"] & rows["test"])
    if split == "chronological":
        assert max(rows["train"]) < min(rows["val"]) and max(rows["val"]) < min(rows["test"])
    assert path.exists()


def test_windows_never_cross_from_one_file_into_the_next(tmp_path: Path) -> None:
    counter_csv(tmp_path / "a.csv", 100)
    frame = pd.read_csv(counter_csv(tmp_path / "b.csv", 100))
    frame["f0"] += 1000
    write_csv(tmp_path / "b.csv", frame)
    dm = TelemetryDataModule(data_dir=str(tmp_path), path=["a.csv", "b.csv"], window=10, split="chronological")
    dm.setup()
    for dataset in (dm.train_set, dm.val_set, dm.test_set):
        steps = as_arrays(dataset)[0][:, 0, :] * dm.spec.preprocessing.std[0] + dm.spec.preprocessing.mean[0]
        assert ((steps < 1000).all(axis=1) | (steps >= 1000).all(axis=1)).all()


def test_stratified_split_puts_every_class_in_every_split_and_follows_the_seed(channel: Path) -> None:
    def counts(seed: int, mode: str = "window") -> dict:
        dm = TelemetryDataModule(data_dir=str(channel), path=CHANNEL, mode=mode, window=16, seed=seed)
        dm.setup()
        return dm.spec.stats.split_class_counts

    first = counts(1)
    assert all(min(per_class) > 0 for per_class in first.values())
    assert counts(1) == first and counts(2) != first
    rows = counts(1, "row")
    assert all(min(per_class) > 0 for per_class in rows.values())


def test_blocked_k_fold_tests_every_block_once_and_keeps_each_fold_leak_free(tmp_path: Path) -> None:
    labels = np.repeat([0, 1, 0, 2, 0], [120, 100, 140, 100, 140])
    counter_csv(tmp_path / "series.csv", 600, labels)

    def fold(index: int) -> dict[str, set[int]]:
        dm = TelemetryDataModule(
            data_dir=str(tmp_path), path="series.csv", window=8, folds=3, fold=index, normalization="none"
        )
        dm.setup()
        assert dm.spec.stats.split_class_counts["train"][1:] != [0, 0]
        return {
            name: set(as_arrays(ds)[0][:, 0, -1].astype(int).tolist())  # each window's last row (f0 = row index)
            for name, ds in (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set))
        }

    folds = [fold(i) for i in range(3)]
    tested = [f["test"] for f in folds]
    assert not (tested[0] & tested[1]) and not (tested[0] & tested[2]) and not (tested[1] & tested[2])
    # over the k folds each block of 16 rows (2 x window) is tested once: every window inside a block
    assert {row for row in range(600) if row % 16 >= 7} <= set().union(*tested)
    for parts in folds:  # within a fold no window of one part shares a row with a window of another
        spans = {name: {r - k for r in ends for k in range(8)} for name, ends in parts.items()}
        assert not (spans["train"] & spans["test"]) and not (spans["val"] & spans["test"])
    assert fold(1) == folds[1]  # the fold assignment follows the seed, not the fold asked for


def test_a_class_with_a_single_block_always_trains_in_k_fold(tmp_path: Path) -> None:
    labels = np.zeros(400, dtype=int)
    labels[40:140], labels[300:310] = 1, 2  # class 2: one block of 16 rows
    counter_csv(tmp_path / "series.csv", 400, labels)
    for index in range(4):
        dm = TelemetryDataModule(data_dir=str(tmp_path), path="series.csv", window=8, folds=4, fold=index)
        dm.setup()
        counts = dm.spec.stats.split_class_counts
        assert counts["train"][2] > 0 and counts["test"][2] == 0 and counts["test"][0] > 0


def test_fold_settings_are_checked(tmp_path: Path) -> None:
    counter_csv(tmp_path / "series.csv", 200)
    with pytest.raises(CnnZooError, match="data.folds must be >= 2 and data.fold in 0..folds-1"):
        TelemetryDataModule(data_dir=str(tmp_path), path="series.csv", folds=3, fold=3)
    with pytest.raises(CnnZooError, match="data.folds needs data.path and split=stratified"):
        TelemetryDataModule(data_dir=str(tmp_path), path="series.csv", folds=3, split="chronological")


def test_episode_split_cuts_every_labelled_run_in_time_order(tmp_path: Path) -> None:
    labels = np.repeat([0, 1, 0, 2, 0], [100, 50, 100, 50, 100])
    counter_csv(tmp_path / "series.csv", 400, labels)
    dm = TelemetryDataModule(
        data_dir=str(tmp_path), path="series.csv", mode="row", split="episodes", normalization="none"
    )
    dm.setup()
    assert all(min(counts) > 0 for counts in dm.spec.stats.split_class_counts.values())
    train_rows = as_arrays(dm.train_set)[0][:, 0, 0].astype(int)
    test_rows = as_arrays(dm.test_set)[0][:, 0, 0].astype(int)
    # the first anomaly episode (rows 100-149): its first 70% trains, its last 15% tests
    assert set(range(100, 135)) <= set(train_rows) and set(range(143, 150)) <= set(test_rows)


def test_differences_add_each_features_change_within_a_piece(tmp_path: Path) -> None:
    counter_csv(tmp_path / "series.csv", 200)
    dm = TelemetryDataModule(
        data_dir=str(tmp_path), path="series.csv", window=5, split="chronological", differences=True,
        normalization="none",
    )
    dm.setup()
    assert list(dm.spec.preprocessing.feature_names) == ["f0", "f1", "diff_f0", "diff_f1"] and dm.spec.in_channels == 4
    x = as_arrays(dm.test_set)[0]
    assert (x[0, 2] == [0, 1, 1, 1, 1]).all()  # the test piece's first row has no predecessor inside it
    assert np.allclose(x[1:, 2], 1.0)


def test_scaler_is_fitted_on_the_training_rows_only(tmp_path: Path) -> None:
    counter_csv(tmp_path / "series.csv", 200)
    dm = TelemetryDataModule(data_dir=str(tmp_path), path="series.csv", mode="row", split="chronological")
    dm.setup()
    # chronological: train = rows 0..139, whose f0 (= row index) has mean 69.5
    assert dm.spec.preprocessing.mean[0] == pytest.approx(69.5)
    assert dm.spec.preprocessing.std[0] == pytest.approx(np.arange(140).std(), rel=1e-5)
    train_x = as_arrays(dm.train_set)[0][:, 0, 0]
    test_x = as_arrays(dm.test_set)[0][:, 0, 0]
    assert train_x.mean() == pytest.approx(0.0, abs=1e-5) and test_x.mean() > 1.5  # later rows: beyond train's range


def test_constant_features_keep_unit_scale(tmp_path: Path) -> None:
    frame = telemetry_frame(120, anomalies=((30, 60, 1), (80, 100, 1)))
    frame["f3"] = 0.0
    write_csv(tmp_path / "x.csv", frame)
    dm = TelemetryDataModule(data_dir=str(tmp_path), path="x.csv", window=10)
    dm.setup()
    assert dm.spec.preprocessing.std[3] == 1.0
    assert torch.isfinite(as_arrays_tensor(dm.train_set)).all()


def as_arrays_tensor(dataset) -> torch.Tensor:
    return torch.from_numpy(as_arrays(dataset)[0])


def test_explicit_files_and_a_validation_part_carved_from_train(channel: Path) -> None:
    write_csv(channel / "fit.csv", pd.read_csv(channel / "C-1_test.csv").iloc[:400])
    write_csv(channel / "holdout.csv", pd.read_csv(channel / "C-1_test.csv").iloc[400:])
    dm = TelemetryDataModule(
        data_dir=str(channel), train_path="fit.csv", test_path="holdout.csv", window=8, val_size=0.2
    )
    dm.setup()
    assert len(dm.test_set) == 800 - 8 + 1  # the whole test file
    assert dm.spec.stats.split_sizes["val"] > 0
    assert set(list(dm.spec.preprocessing.feature_names)) == {"f0", "f1", "f2", "f3"}


def test_label_column_can_be_named(tmp_path: Path) -> None:
    frame = telemetry_frame(100, anomalies=((20, 40, 1), (60, 80, 1)))
    frame = frame[["label", "f0", "f1"]].rename(columns={"label": "status"})
    write_csv(tmp_path / "x.csv", frame)
    dm = TelemetryDataModule(data_dir=str(tmp_path), path="x.csv", label_column="status", mode="row")
    dm.setup()
    assert list(dm.spec.preprocessing.feature_names) == ["f0", "f1"] and dm.spec.preprocessing.label_column == "status"
    assert dm.spec.num_classes == 2


def test_split_helper_cuts_pieces_at_the_fractions() -> None:
    segment = Segment(np.zeros((100, 1), np.float32), np.zeros(100, np.int64), "mem")
    pieces = split_segments([segment], {"val": 0.2, "test": 0.1}, "chronological", 1, 0)
    assert [sum(len(p) for p in pieces[n]) for n in ("train", "val", "test")] == [70, 20, 10]


# ---------------------------------------------------------------------- errors
def bad_csv(tmp_path: Path, change) -> Path:
    frame = telemetry_frame(40, anomalies=((10, 20, 1),)).astype(object)
    change(frame)
    return write_csv(tmp_path / "bad.csv", frame)


@pytest.mark.parametrize(
    ("change", "settings", "message"),
    [
        (lambda f: f.__setitem__("f2", f["f2"].where(f.index != 6, "abc")), {}, r"column 'f2', line 8: 'abc' is not a"),
        (lambda f: f.__setitem__("f1", f["f1"].where(f.index != 3, np.nan)), {}, r"column 'f1', line 5 is empty, NaN"),
        (lambda f: f.__setitem__("label", f["label"].where(f.index != 2, 0.5)), {}, r"'label', line 4: 0.5 is not a"),
        (lambda f: None, {"label_column": "status"}, r"no label column 'status' \(columns: \['f0'"),
        (lambda f: f.__setitem__("label", 0), {}, r"bad.csv\) has a single class in column 'label'"),
        (lambda f: None, {"window": 64}, r"bad.csv has 40 rows, fewer than one window \(data.window=64\)"),
        (lambda f: None, {"class_names": ["nominal"]}, r"data.class_names has only 1 names"),
    ],
)
def test_bad_csvs_are_one_line_errors_naming_file_column_and_line(
    tmp_path: Path, change, settings: dict, message: str
) -> None:
    path = bad_csv(tmp_path, change)
    with pytest.raises(CnnZooError, match=message) as err:
        TelemetryDataModule(data_dir=str(tmp_path), path="bad.csv", **({"window": 8} | settings)).setup()
    assert "\n" not in str(err.value)
    assert str(path) in str(err.value) or "class_names" in str(err.value)


def test_missing_file_and_ambiguous_sources_are_errors(tmp_path: Path) -> None:
    with pytest.raises(CnnZooError, match=r"telemetry CSV not found: .*nope.csv"):
        TelemetryDataModule(data_dir=str(tmp_path), path="nope.csv").setup()
    with pytest.raises(CnnZooError, match="either data.path .* or data.train_path"):
        TelemetryDataModule(data_dir=str(tmp_path), path="a.csv", train_path="b.csv")
    with pytest.raises(CnnZooError, match="either data.path"):
        TelemetryDataModule(data_dir=str(tmp_path))
    with pytest.raises(CnnZooError, match="data.mode must be one of"):
        TelemetryDataModule(data_dir=str(tmp_path), path="a.csv", mode="image")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CnnZooError, match="cannot read .*empty.csv as CSV"):
        TelemetryDataModule(data_dir=str(tmp_path), path="empty.csv").setup()


def test_all_nominal_training_file_explains_how_to_split_real_channels(channel: Path) -> None:
    dm = TelemetryDataModule(data_dir=str(channel), train_path="C-1_train.csv", test_path="C-1_test.csv", window=8)
    with pytest.raises(CnnZooError, match=r"classes \['1', '2'\] have no training windows .* all nominal"):
        dm.setup()


def test_a_class_missing_from_the_training_part_says_how_to_split_instead(tmp_path: Path) -> None:
    labels = np.zeros(200, dtype=int)
    labels[20:40], labels[165:195] = 1, 2  # class 2 only after the chronological training part (70%)
    counter_csv(tmp_path / "late.csv", n_rows=200, labels=labels)
    dm = TelemetryDataModule(data_dir=str(tmp_path), path="late.csv", window=8, split="chronological")
    with pytest.raises(CnnZooError, match=r"classes \['2'\] have no training windows .* use split=episodes"):
        dm.setup()
    dm = TelemetryDataModule(data_dir=str(tmp_path), path="late.csv", window=8, split="episodes")
    dm.setup()
    assert dm.spec.stats.split_class_counts["train"][2] > 0


# ---------------------------------------------------------------------- end to end
@pytest.mark.parametrize("mode", ["window", "row"])
def test_train_evaluate_and_a_self_sufficient_checkpoint(compose_cfg, channel: Path, mode: str) -> None:
    cfg = compose_cfg(
        "data=telemetry", f"paths.data_dir={channel}", f"data.path=[{','.join(CHANNEL)}]", f"data.mode={mode}",
        "data.window=16", "data.class_names=[nominal,point,contextual]", "model=conv1d_telemetry",
        "model.net.filters=[16,8]", "model.class_weights=balanced", *FAST, "trainer.max_epochs=3", "logger=none",
        "optimizer.lr=3e-3",
    )  # fmt: skip
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert json.loads((run / "metrics.json").read_text())["test/f1"] == pytest.approx(metrics["test/f1"])
    scaler = json.loads((run / "scaler.json").read_text())
    assert scaler["feature_names"] == ["f0", "f1", "f2", "f3"] and len(scaler["mean"]) == 4
    assert scaler["mode"] == mode and scaler["window"] == (16 if mode == "window" else None)
    checkpoint = next((run / "checkpoints").glob("epoch_*.ckpt"))
    spec = DataSpec.from_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]["data"])
    assert list(spec.preprocessing.mean) == scaler["mean"] and spec.class_names == ("nominal", "point", "contextual")
    assert spec.input_shape == ((4, 16) if mode == "window" else (1, 4))
    model = load_classifier(checkpoint)
    x = torch.from_numpy(as_arrays(train_data(cfg).test_set)[0])
    with torch.no_grad():
        assert model(x).shape == (len(x), 3)
    eval_cfg = compose_cfg(f"ckpt_path={checkpoint}", "logger=none", config_name="evaluate")
    assert evaluate(eval_cfg)["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def train_data(cfg) -> TelemetryDataModule:
    from cnn_zoo.training.pipeline import build_datamodule

    return build_datamodule(cfg)


def test_anomalies_are_learned_from_windows(compose_cfg, channel: Path) -> None:
    """The generated anomalies show in their history: a short run separates the three classes (macro F1)."""
    cfg = compose_cfg(
        "data=telemetry", f"paths.data_dir={channel}", f"data.path=[{','.join(CHANNEL)}]", "data.window=16",
        "model=conv1d_telemetry", "model.net.filters=[32,16]", "model.class_weights=balanced", *FAST,
        "trainer.max_epochs=10", "logger=none", "optimizer.lr=3e-3",
    )  # fmt: skip
    assert train(cfg)["test/f1"] > 0.6  # chance: about 0.33 (three classes)


@pytest.mark.real_data
def test_real_msl_channel_one_epoch(compose_cfg) -> None:
    folder = require_real("telemetry", "MSL")
    cfg = compose_cfg(
        "experiment=telemetry_conv1d", f"paths.data_dir={folder.parents[1]}", *FAST, "trainer.max_epochs=1",
        "logger=none",
    )  # fmt: skip
    metrics = train(cfg)
    assert 0.0 <= metrics["test/f1"] <= 1.0 and metrics["test/acc"] > 0.5
    spec = DataSpec.from_dict(json.loads((Path(cfg.paths.output_dir) / "data.json").read_text()))
    assert spec.num_classes == 3 and spec.in_channels == 15
    assert all(min(counts) > 0 for counts in spec.stats.split_class_counts.values())
