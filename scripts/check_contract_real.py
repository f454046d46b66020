"""Issue 15's done-when checks on the real data: files users bring, predict and export for three kinds.

1. A grayscale PNG digit folder rendered from real MNIST (100 per class train, 30 validation, 30 test) trains
   LeNet as 1 channel (`data=image_folder data.color_mode=grayscale`).
2. A header-less sensor set made from SMAP E-3 (train + test rows; a timestamp column first, text labels,
   semicolons; 200-row chunks dealt 5:1:1 into train/val/test files) trains with command-line options only.
3. A quick Conv1D on 2,000 real IMDB reviews per class; predicts a CSV of 200 real test reviews.
Each checkpoint is predicted, exported to ONNX and TorchScript, and predicted again through the exported file.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/check_contract_real.py --out /tmp/contract_real
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import FAST  # noqa: E402

from cnn_zoo.config import compose_train_config  # noqa: E402
from cnn_zoo.export import export  # noqa: E402
from cnn_zoo.predict import predict  # noqa: E402
from cnn_zoo.train import train  # noqa: E402


class Check:
    def __init__(self, data: Path, out: Path) -> None:
        self.data, self.out, self.results = data, out, {}

    def cfg(self, name: str, overrides: list[str], config: str = "train"):
        cfg = compose_train_config(overrides, self.out / "runs" / name, config_name=config)
        GlobalHydra.instance().clear()
        return cfg

    def best(self, name: str) -> Path:
        return next((self.out / "runs" / name / "checkpoints").glob("epoch_*.ckpt"))

    def train(self, name: str, overrides: list[str]) -> None:
        metrics = train(self.cfg(name, [*overrides, *FAST, "logger=none"]))
        self.results[name] = {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")}
        print(name, self.results[name], flush=True)

    def predict_and_export(self, tag: str, ckpt: Path, source: Path, extra: tuple[str, ...] = ()) -> pd.DataFrame:
        start = time.time()
        base = predict(self.cfg(f"{tag}_predict", [f"ckpt_path={ckpt}", f"input={source}", *extra], "predict"))
        record: dict = {"rows": len(base), "predict_s": round(time.time() - start, 1)}
        numbers = base.select_dtypes("number").columns
        for fmt in ("onnx", "torchscript"):
            path = export(self.cfg(f"{tag}_export_{fmt}", [f"ckpt_path={ckpt}", f"format={fmt}"], "export"))
            sidecar = json.loads(path.with_suffix(".json").read_text())
            overrides = [f"model_path={path}", f"input={source}", *extra]
            again = predict(self.cfg(f"{tag}_predict_{fmt}", overrides, "predict"))
            first = (self.out / "runs" / f"{tag}_predict" / "predictions.csv").read_text()
            second = (self.out / "runs" / f"{tag}_predict_{fmt}" / "predictions.csv").read_text()
            record[fmt] = {
                "export_parity": sidecar["parity_max_abs_diff"],
                "csv_identical": first == second,
                "max_abs_diff_probs": float((again[numbers] - base[numbers]).abs().max().max()),
                "same_predicted": bool((again["predicted"] == base["predicted"]).all()),
                "bytes": path.stat().st_size,
            }
        self.results[tag] = record
        print(tag, record, flush=True)
        return base


def render_digits(data: Path, digits: Path) -> None:
    from torchvision.datasets import MNIST

    for split, train_flag, per in (("train", True, 100), ("validation", True, 30), ("test", False, 30)):
        dataset = MNIST(str(data), train=train_flag, download=False)
        offset = 50000 if split == "validation" else 0  # validation digits from the end of the training file
        for label in range(10):
            indices = (dataset.targets[offset:] == label).nonzero().flatten()[:per] + offset
            folder = digits / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in indices.tolist():
                Image.fromarray(dataset.data[i].numpy(), mode="L").save(folder / f"{i}.png")


def sensor_files(data: Path, sensor: Path) -> None:
    parts = [pd.read_csv(data / f"telemetry/SMAP/E-3_{name}.csv") for name in ("train", "test")]
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "time", pd.date_range("2026-01-01", periods=len(frame), freq="min").strftime("%Y-%m-%d %H:%M"))
    frame["label"] = frame["label"].map({0: "nominal", 1: "point", 2: "contextual"})
    chunk = np.arange(len(frame)) // 200 % 7
    sensor.mkdir(parents=True, exist_ok=True)
    for part, chunks in (("train", [0, 1, 2, 3, 4]), ("val", [5]), ("test", [6])):
        frame[np.isin(chunk, chunks)].to_csv(sensor / f"{part}.csv", sep=";", header=False, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/contract_real"))
    args = parser.parse_args()
    data = Path(os.environ.get("CNN_ZOO_DATA_DIR", "data")).resolve()
    out = args.out.resolve()
    check = Check(data, out)

    digits = out / "digits"
    if not digits.exists():
        render_digits(data, digits)
    check.train("digits_lenet", [
        "data=image_folder", f"paths.data_dir={out}", "data.folder=digits", "data.color_mode=grayscale",
        "data.image_size=28", "data.num_workers=0", "model=lenet", "trainer.max_epochs=8",
        "callbacks.early_stopping=null", "data.batch_size=32",
    ])  # fmt: skip
    check.predict_and_export("digits", check.best("digits_lenet"), digits / "test", ("top_k=3",))

    sensor = out / "sensor"
    sensor_files(data, sensor)
    names = ",".join(["time"] + [f"f{i}" for i in range(18)] + ["state"])
    check.train("sensor_conv1d", [
        "data=telemetry", f"data.train_path={sensor}/train.csv", f"data.val_path={sensor}/val.csv",
        f"data.test_path={sensor}/test.csv", "data.header=false", f"data.column_names=[{names}]",
        "data.drop_columns=[time]", "data.label_column=state", "data.class_names=[nominal,point]", "data.mode=row",
        "model=conv1d_telemetry", "trainer.max_epochs=10", "model.class_weights=balanced",
    ])  # fmt: skip
    check.predict_and_export("sensor", check.best("sensor_conv1d"), sensor / "test.csv")

    check.train("imdb_conv1d", [
        "data=imdb", f"paths.data_dir={data}", f"paths.cache_dir={out}/cache", "data.max_reviews=2000",
        "data.val_size=500", "data.max_len=200", "model=conv1d_text", "model.net.embedding_dim=32",
        "trainer.max_epochs=3",
    ])  # fmt: skip
    tree = next((out / "cache" / "imdb").glob("extracted-*/aclImdb"))
    reviews = [
        (path.read_text(errors="replace"), label)
        for label in ("pos", "neg")
        for path in sorted((tree / "test" / label).glob("*.txt"))[-100:]
    ]
    table = pd.DataFrame({"text": [text for text, _ in reviews], "label": [label for _, label in reviews]})
    table.to_csv(out / "reviews.csv", index=False)
    predicted = check.predict_and_export("imdb", check.best("imdb_conv1d"), out / "reviews.csv", ("input_column=text",))
    check.results["imdb"]["accuracy_on_200_reviews"] = float((predicted["predicted"] == table["label"]).mean())
    (out / "results.json").write_text(json.dumps(check.results, indent=1) + "\n")
    print(json.dumps(check.results, indent=1))


if __name__ == "__main__":
    main()
