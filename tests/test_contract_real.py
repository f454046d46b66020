"""Files users bring, on the real data, through train, predict, export and predict-from-the-export, for the three
kinds (the one-off scripts/check_contract_real.py of issue 15, made quick):

- images: a grayscale PNG digit folder rendered from real MNIST trains LeNet as 1 channel;
- sequences: a header-less, semicolon-separated sensor set made from SMAP E-3 (a timestamp column first, text
  labels) trains with command-line options only;
- text: a Conv1D on a few real IMDB reviews predicts a CSV of real test reviews.

Each checkpoint is exported to ONNX and TorchScript, and the exported file predicts the same classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.runtime.config_values import user_cache_dir
from tests.conftest import FAST, require_real

pytestmark = pytest.mark.real_data
pytest.importorskip("onnxruntime", reason="ONNX parity needs the export extra (onnx, onnxruntime)")

QUICK = [*FAST, "trainer.max_epochs=1", "logger=none", "callbacks.early_stopping=null"]


def compose(out: Path, name: str, overrides: list[str], config: str = "train"):
    cfg = compose_train_config(overrides, out / "runs" / name, config_name=config)
    GlobalHydra.instance().clear()
    return cfg


def train_quickly(out: Path, tag: str, overrides: list[str]) -> Path:
    """One epoch of `tag`; its best checkpoint."""
    from cnn_zoo.train import train

    metrics = train(compose(out, tag, [*overrides, *QUICK]))
    assert 0.0 <= metrics["test/acc"] <= 1.0
    return next((out / "runs" / tag / "checkpoints").glob("epoch_*.ckpt"))


def round_trip(out: Path, tag: str, ckpt: Path, source: Path, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Predict `source`, export to both formats and predict again from each file; the first predictions."""
    from cnn_zoo.export import export
    from cnn_zoo.predict import predict

    base = predict(compose(out, f"{tag}_predict", [f"ckpt_path={ckpt}", f"input={source}", *extra], "predict"))
    numbers = base.select_dtypes("number").columns
    for fmt in ("onnx", "torchscript"):
        path = export(compose(out, f"{tag}_{fmt}", [f"ckpt_path={ckpt}", f"format={fmt}"], "export"))
        assert json.loads(path.with_suffix(".json").read_text())["parity_max_abs_diff"] < 1e-4
        overrides = [f"model_path={path}", f"input={source}", *extra]
        again = predict(compose(out, f"{tag}_predict_{fmt}", overrides, "predict"))
        assert len(again) == len(base) and (again["predicted"] == base["predicted"]).all(), fmt
        assert float((again[numbers] - base[numbers]).abs().max().max()) < 1e-4, fmt
    return base


def test_a_grayscale_png_digit_folder_from_real_mnist(tmp_path: Path) -> None:
    from torchvision.datasets import MNIST

    data = require_real("MNIST").parent
    digits = tmp_path / "digits"
    for split, train_flag, per in (("train", True, 12), ("validation", True, 4), ("test", False, 4)):
        dataset = MNIST(str(data), train=train_flag, download=False)
        offset = 50000 if split == "validation" else 0  # validation digits from the end of the training file
        for label in range(10):
            folder = digits / split / str(label)
            folder.mkdir(parents=True)
            for i in ((dataset.targets[offset:] == label).nonzero().flatten()[:per] + offset).tolist():
                Image.fromarray(dataset.data[i].numpy(), mode="L").save(folder / f"{i}.png")
    ckpt = train_quickly(tmp_path, "digits", [
        "data=image_folder", f"paths.data_dir={tmp_path}", "data.folder=digits", "data.color_mode=grayscale",
        "data.image_size=28", "data.num_workers=0", "model=lenet", "data.batch_size=32",
    ])  # fmt: skip
    assert len(round_trip(tmp_path, "digits", ckpt, digits / "test", ("top_k=3",))) == 40


def test_a_headerless_semicolon_sensor_set_from_real_smap(tmp_path: Path) -> None:
    smap = require_real("telemetry", "SMAP")
    frame = pd.concat([pd.read_csv(smap / f"E-3_{name}.csv") for name in ("train", "test")], ignore_index=True)
    frame.insert(0, "time", pd.date_range("2026-01-01", periods=len(frame), freq="min").strftime("%Y-%m-%d %H:%M"))
    frame["label"] = frame["label"].map({0: "nominal", 1: "point", 2: "contextual"})
    chunk = np.arange(len(frame)) // 200 % 7  # 200-row chunks dealt 5:1:1 into train/val/test files
    sensor = tmp_path / "sensor"
    sensor.mkdir()
    for part, chunks in (("train", [0, 1, 2, 3, 4]), ("val", [5]), ("test", [6])):
        frame[np.isin(chunk, chunks)].to_csv(sensor / f"{part}.csv", sep=";", header=False, index=False)
    names = ",".join(["time"] + [f"f{i}" for i in range(18)] + ["state"])
    ckpt = train_quickly(tmp_path, "sensor", [
        "data=telemetry", f"data.train_path={sensor}/train.csv", f"data.val_path={sensor}/val.csv",
        f"data.test_path={sensor}/test.csv", "data.header=false", f"data.column_names=[{names}]",
        "data.drop_columns=[time]", "data.label_column=state", "data.class_names=[nominal,point]", "data.mode=row",
        "model=conv1d_telemetry", "model.class_weights=balanced",
    ])  # fmt: skip
    assert len(round_trip(tmp_path, "sensor", ckpt, sensor / "test.csv")) == int(np.isin(chunk, [6]).sum())


def test_a_csv_of_real_imdb_reviews(tmp_path: Path) -> None:
    archive = require_real("aclImdb_v1.tar.gz")
    cache = user_cache_dir()  # the archive is extracted there once, as a user's runs share it
    ckpt = train_quickly(tmp_path, "imdb", [
        "data=imdb", f"paths.data_dir={archive.parent}", f"paths.cache_dir={cache}", "data.max_reviews=300",
        "data.val_size=100", "data.max_len=100", "model=conv1d_text", "model.net.embedding_dim=16",
    ])  # fmt: skip
    tree = next((cache / "imdb").glob("extracted-*/aclImdb"))
    reviews = [(path.read_text(errors="replace"), label) for label in ("pos", "neg")
               for path in sorted((tree / "test" / label).glob("*.txt"))[-20:]]  # fmt: skip
    pd.DataFrame(reviews, columns=["text", "label"]).to_csv(tmp_path / "reviews.csv", index=False)
    predicted = round_trip(tmp_path, "imdb", ckpt, tmp_path / "reviews.csv", ("input_column=text",))
    assert len(predicted) == 40 and set(predicted["predicted"]) <= {"neg", "pos"}
