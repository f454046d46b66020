"""The proof that a data kind needs no library edit: a toy tabular kind (rows of floats from a CSV) and its
datamodule are defined in this file alone, and train, evaluate, predict, export and explain run on it.

The datamodule is chosen through config (`~data +data._target_=tests.test_new_kind.TabularDataModule`), the kind
registers itself when this module is imported, and the spec records the module, so a command in a fresh process
(predict below) imports it again from the checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from torch.utils.data import TensorDataset

from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.data.base import ZooDataModule
from cnn_zoo.data.kinds import DataKind, RawInput, Sample, kind_named, register_kind
from cnn_zoo.data.spec import DataSpec, DataStats
from cnn_zoo.runtime.errors import CnnZooError
from tests.conftest import FAST, run_command

COLUMNS = [f"x{i}" for i in range(8)]
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- the new kind
@dataclass(frozen=True)
class TabularPreprocessing:
    """Named float columns, standardised: a row becomes one channel over the columns, (1, F)."""

    kind: ClassVar[str] = "tabular"
    columns: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise CnnZooError(f"the table lacks the training columns {missing}")
        x = frame[list(self.columns)].to_numpy(np.float32)
        return ((x - np.float32(self.mean)) / np.float32(self.std))[:, None, :].astype(np.float32)


@register_kind
class TabularKind(DataKind):
    name = "tabular"
    label = "tables"
    preprocessing = TabularPreprocessing
    reads = "a CSV with the training columns"

    def network_inputs(self, spec: DataSpec) -> dict[str, Any]:
        return {"in_channels": 1}

    def samples(self, spec: DataSpec, source: RawInput) -> Iterator[Sample]:
        path = self.files(self.existing(source), lambda p: p.suffix == ".csv", (".csv",))[0]
        for i, row in enumerate(spec.preprocessing.encode(pd.read_csv(path))):
            yield Sample({"row": i}, f"{path.stem}_row{i}", f"{path}, row {i}", torch.from_numpy(row).unsqueeze(0))

    def step_names(self, spec: DataSpec) -> list[str] | None:
        return list(spec.preprocessing.columns)  # figures name the positions after the columns


class TabularDataModule(ZooDataModule):
    """A CSV of `x0..x7` and `label`: 60/20/20 train/val/test in file order."""

    def __init__(self, path: str, batch_size: int = 32, num_workers: int = 0) -> None:
        super().__init__(batch_size, num_workers)
        self.path = path

    def setup(self, stage: str | None = None) -> None:
        frame = pd.read_csv(self.path)
        raw = frame[COLUMNS].to_numpy(np.float32)
        prep = TabularPreprocessing(
            tuple(COLUMNS), tuple(float(v) for v in raw.mean(0)), tuple(float(v) + 1e-6 for v in raw.std(0))
        )
        x, y = torch.from_numpy(prep.encode(frame)), torch.from_numpy(frame["label"].to_numpy(np.int64))
        cut = [0, int(0.6 * len(y)), int(0.8 * len(y)), len(y)]
        self.train_set, self.val_set, self.test_set = (
            TensorDataset(x[a:b], y[a:b]) for a, b in zip(cut[:-1], cut[1:], strict=True)
        )
        sizes = {"train": cut[1], "val": cut[2] - cut[1], "test": cut[3] - cut[2]}
        counts = tuple(int((y[: cut[1]] == c).sum()) for c in (0, 1))
        self.spec = DataSpec(
            kind="tabular", class_names=("low", "high"), input_shape=(1, len(COLUMNS)), input_dtype="float32",
            preprocessing=prep, stats=DataStats(class_counts=counts, split_sizes=sizes),
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------- the commands
def table(path: Path, rows: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(COLUMNS))).astype(np.float32)
    frame = pd.DataFrame(x, columns=COLUMNS)
    frame["label"] = (x[:, 0] + x[:, 1] > 0).astype(int)
    frame.to_csv(path, index=False)
    return path


def config(name: str, run_dir: Path, *overrides: str):
    cfg = compose_train_config([*overrides, "++trainer.enable_progress_bar=false"], run_dir, config_name=name)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from cnn_zoo.train import train

    base = tmp_path_factory.mktemp("tabular")
    data = table(base / "rows.csv", 200, seed=0)
    cfg = config(
        "train", base / "run", *FAST, "trainer.max_epochs=3", "logger=none", "callbacks.early_stopping=null",
        "callbacks.confusion_matrix=null", "callbacks.augmentation_preview=null",
        "~data", f"+data._target_={__name__}.TabularDataModule", f"+data.path={data}",
        "model=conv1d_telemetry", "model.net.filters=[8,8]", "model.net.kernel_size=[3,2]", "optimizer.lr=0.01",
    )  # fmt: skip
    metrics = train(cfg)
    ckpt = next((base / "run" / "checkpoints").glob("epoch_*.ckpt"))
    return {"base": base, "data": data, "ckpt": ckpt, "metrics": metrics, "new": table(base / "new.csv", 7, seed=1)}


def test_training_records_the_kind_by_name_and_module(tabular: dict) -> None:
    stored = torch.load(tabular["ckpt"], map_location="cpu", weights_only=True)["hyper_parameters"]["data"]
    assert stored["kind"] == "tabular" and stored["kind_module"] == __name__  # plain strings
    assert DataSpec.from_dict(stored).preprocessing.columns == tuple(COLUMNS)
    assert tabular["metrics"]["val/acc"] > 0.6  # x0 + x1 > 0 is learnable from 120 rows


def test_evaluate_with_top_losses(tabular: dict) -> None:
    from cnn_zoo.evaluate import evaluate

    run = tabular["base"] / "eval"
    metrics = evaluate(config("evaluate", run, f"ckpt_path={tabular['ckpt']}", "top_losses=4"))
    assert 0.0 <= metrics["test/acc"] <= 1.0
    matrix = json.loads((run / "confusion_matrix.json").read_text())["matrix"]
    assert sum(map(sum, matrix)) == 40  # the 40 test rows the datamodule rebuilt from the checkpoint's config
    assert (run / "top_losses.md").is_file()
    assert (run / "top_losses.png").is_file() or "0 mistakes" in (run / "top_losses.md").read_text()


def test_predict_reads_raw_rows_through_the_kind(tabular: dict) -> None:
    from cnn_zoo.predict import predict

    out = tabular["base"] / "pred.csv"
    frame = predict(config("predict", tabular["base"] / "p", f"ckpt_path={tabular['ckpt']}",
                           f"input={tabular['new']}", f"output={out}"))  # fmt: skip
    assert frame["row"].tolist() == list(range(7)) and set(frame["predicted"]) <= {"low", "high"}
    assert np.allclose(frame["prob_low"] + frame["prob_high"], 1.0, atol=1e-5)


def test_export_and_predict_from_the_exported_file(tabular: dict) -> None:
    from cnn_zoo.export import export
    from cnn_zoo.predict import predict

    path = export(config("export", tabular["base"] / "x", f"ckpt_path={tabular['ckpt']}", "format=torchscript",
                         f"output_dir={tabular['base'] / 'exported'}"))  # fmt: skip
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["input"]["shape"] == [None, 1, 8] and sidecar["spec"]["kind_module"] == __name__
    common = [f"input={tabular['new']}", f"output={tabular['base'] / 'e.csv'}"]
    exported = predict(config("predict", tabular["base"] / "pe", f"model_path={path}", *common))
    checkpoint = predict(config("predict", tabular["base"] / "pc", f"ckpt_path={tabular['ckpt']}", *common))
    assert np.allclose(exported["prob_high"], checkpoint["prob_high"], atol=1e-5)


@pytest.mark.parametrize("method", ["saliency", "gradcam", "activations"])
def test_explain_draws_the_row(tabular: dict, method: str) -> None:
    from cnn_zoo.explain import explain

    run = tabular["base"] / f"explain_{method}"
    explain(config("explain", run, f"ckpt_path={tabular['ckpt']}", f"input={tabular['new']}", f"method={method}",
                   "max_inputs=2"))  # fmt: skip
    summary = json.loads((run / "explain.json").read_text())
    assert summary["inputs"] == 2 and summary["figures"] >= 2
    assert sorted(run.glob("new_row0_*.png")) and "new.csv, row 0" in (run / "index.html").read_text()


def test_a_fresh_process_imports_the_kind_from_the_checkpoint(tabular: dict) -> None:
    """`predict` in its own process never imported this module: the spec's `kind_module` brings the kind back."""
    out = tabular["base"] / "sub.csv"
    done = run_command("cnn_zoo.predict", f"ckpt_path={tabular['ckpt']}", f"input={tabular['new']}",
                       f"output={out}", f"hydra.run.dir={tabular['base'] / 'sub'}", cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(pd.read_csv(out)) == 7


def test_options_that_do_not_apply_and_unknown_kinds_are_one_line_errors(tabular: dict) -> None:
    from cnn_zoo.training.options import check_model_options

    spec = DataSpec.from_dict(torch.load(tabular["ckpt"], weights_only=True)["hyper_parameters"]["data"])
    with pytest.raises(CnnZooError, match=r"^tta.views=\['hflip'\] applies to images only, and this data \(tabular\)"):
        check_model_options(spec, {"views": ["hflip"]}, channels_last=False)
    with pytest.raises(CnnZooError, match=r"^unknown data kind 'nope'; known kinds: \[.*'tabular'.*\]"):
        kind_named("nope")
    with pytest.raises(CnnZooError, match=r"data kind 'gone': its module 'no_such_module' cannot be imported"):
        DataSpec.from_dict({**spec.to_dict(), "kind": "gone", "kind_module": "no_such_module"})


def test_no_command_compares_kind_names() -> None:
    """What differs between kinds is asked of the kind (`spec.data_kind`), never an `if kind == ...` chain."""
    import re

    chain = re.compile(r"kind\s*(==|!=)|kind in \(")  # the grep of issue 31
    src = REPO / "src" / "cnn_zoo"
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in src.rglob("*.py")
        if "kinds" not in path.relative_to(src).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if chain.search(line)
    ]
    assert not found, "\n".join(found)
