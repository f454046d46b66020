"""Export to ONNX / TorchScript: parity with PyTorch per data kind, the sidecar, and predict through the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.core.global_hydra import GlobalHydra

from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.export import export
from cnn_zoo.predict import predict
from cnn_zoo.runtime.errors import CnnZooError
from tests.fixtures import make_digit_folder
from tests.fixtures_sequences import telemetry_frame, write_csv

pytest.importorskip("onnxruntime", reason="ONNX parity needs the export extra (onnx, onnxruntime)")

FIXTURES = Path(__file__).parent / "fixtures_data"


def config(name: str, run: Path, *overrides: str):
    cfg = compose_train_config(list(overrides), run, config_name=name)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A raw input per kind, in the formats users bring: PNG digits, a review CSV, a telemetry CSV."""
    root = tmp_path_factory.mktemp("inputs")
    reviews = root / "reviews.csv"
    reviews.write_text('text,id\n"A great, wonderful film!",1\n"Awful and boring; I hated it.",2\n"the plot",3\n')
    return {
        "old_lenet_mnist": make_digit_folder(root / "digits", per_class=2, digits=10) / "test",
        "old_conv1d_imdb": reviews,
        "old_conv1d_telemetry": write_csv(root / "series.csv", telemetry_frame(60, anomalies=((20, 40, 1),), seed=3)),
    }


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", ["old_lenet_mnist", "old_conv1d_imdb", "old_conv1d_telemetry"])
def test_exported_model_predicts_what_pytorch_predicts(inputs: dict, tmp_path: Path, name: str, fmt: str) -> None:
    ckpt = FIXTURES / f"{name}.ckpt"
    path = export(config("export", tmp_path / "e", f"ckpt_path={ckpt}", f"format={fmt}"))
    meta = json.loads(path.with_suffix(".json").read_text())
    assert path.suffix == {"onnx": ".onnx", "torchscript": ".pt"}[fmt] and meta["format"] == fmt
    assert meta["parity_max_abs_diff"] <= 1e-4 and meta["input"]["shape"][0] is None
    assert meta["output"]["classes"] == meta["spec"]["class_names"] and "stats" not in meta["spec"]
    plain = predict(config("predict", tmp_path / "a", f"ckpt_path={ckpt}", f"input={inputs[name]}", "top_k=2"))
    exported = predict(config("predict", tmp_path / "b", f"model_path={path}", f"input={inputs[name]}", "top_k=2"))
    numbers = [c for c in plain.columns if c.endswith("prob") or c.startswith("prob_")]
    assert list(exported.columns) == list(plain.columns) and len(plain) > 2
    assert np.abs(exported[numbers].to_numpy() - plain[numbers].to_numpy()).max() <= 1e-4
    assert (exported["predicted"] == plain["predicted"]).all()
    if fmt == "torchscript":  # the same arithmetic: the same file
        assert (tmp_path / "a" / "predictions.csv").read_text() == (tmp_path / "b" / "predictions.csv").read_text()


def test_sidecar_describes_the_preprocessing(tmp_path: Path) -> None:
    path = export(config("export", tmp_path, f"ckpt_path={FIXTURES / 'old_conv1d_telemetry.ckpt'}"))
    prep = json.loads(path.with_suffix(".json").read_text())["spec"]["preprocessing"]
    assert prep["feature_names"] == ["f0", "f1", "f2", "f3"] and len(prep["mean"]) == len(prep["std"]) == 4
    assert prep["window"] == 16 and prep["mode"] == "window"


def test_export_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CnnZooError, match=r"format must be one of \['onnx', 'torchscript'\]"):
        export(config("export", tmp_path, f"ckpt_path={FIXTURES / 'old_lenet_mnist.ckpt'}", "format=tflite"))
    with pytest.raises(CnnZooError, match="exported model not found: .*nothing.onnx and its sidecar"):
        predict(config("predict", tmp_path / "p", f"model_path={tmp_path / 'nothing.onnx'}", f"input={tmp_path}"))


def test_predict_text_from_txt_files_and_json_output(tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("A great, wonderful film!")
    (folder / "sub" / "b.txt").write_text("Awful and boring; I hated it.")
    ckpt = FIXTURES / "old_conv1d_imdb.ckpt"
    table = predict(config("predict", tmp_path / "p", f"ckpt_path={ckpt}", f"input={folder}", "format=json"))
    rows = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert [Path(r["path"]).name for r in rows] == ["a.txt", "b.txt"] and len(table) == 2
    assert rows[0]["prob_neg"] + rows[0]["prob_pos"] == pytest.approx(1.0)
    single = predict(config("predict", tmp_path / "q", f"ckpt_path={ckpt}", f"input={folder / 'a.txt'}"))
    assert single.loc[0, "prob_pos"] == pytest.approx(table.loc[0, "prob_pos"], abs=1e-6)


def test_predict_text_csv_needs_the_named_column(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("review\nfine\n")
    ckpt = FIXTURES / "old_conv1d_imdb.ckpt"
    cfg = config("predict", tmp_path / "p", f"ckpt_path={ckpt}", f"input={tmp_path / 'r.csv'}")
    with pytest.raises(CnnZooError, match=r"r.csv has no column 'text' \(columns: \['review'\]\); pass input_column"):
        predict(cfg)


def test_predict_sequences_needs_the_training_columns(tmp_path: Path) -> None:
    pd.DataFrame({"f0": [1.0] * 20, "f1": [0.0] * 20}).to_csv(tmp_path / "s.csv", index=False)
    ckpt = FIXTURES / "old_conv1d_telemetry.ckpt"
    with pytest.raises(CnnZooError, match=r"s.csv lacks the training feature columns \['f2', 'f3'\]"):
        predict(config("predict", tmp_path / "p", f"ckpt_path={ckpt}", f"input={tmp_path / 's.csv'}"))
