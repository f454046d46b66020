"""`evaluate` and `predict` on a checkpoint a tiny training run wrote: files, numbers, one-line errors."""

from __future__ import annotations

import csv
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.data.transforms import eval_transform
from cnn_zoo.evaluate import evaluate
from cnn_zoo.predict import predict
from cnn_zoo.runtime import startup_gc
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.train import train
from cnn_zoo.training.classifier import Classifier
from tests.conftest import FAST
from tests.fixtures import make_image_folder

TINY = ["model=small_cnn", "model.net.filters=[8,16]", "data.image_size=32", "data.num_workers=0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 4-epoch run of the cats/dogs pipeline on generated 32x32 images (folders layout, with odd files)."""
    base = tmp_path_factory.mktemp("catsdogs")
    data = make_image_folder(base / "data" / "cats_and_dogs_small", layout="folders", per_class=24)
    run = base / "run"
    cfg = compose_train_config(
        ["data=catsdogs", f"paths.data_dir={data.parent}", *TINY, *FAST, "trainer.max_epochs=4", "logger=none",
         "data.batch_size=8", "tta=hflip", "augmentation=flip", "optimizer.lr=3e-3"],
        run,
    )  # fmt: skip
    metrics = train(cfg)
    GlobalHydra.instance().clear()
    best = next((run / "checkpoints").glob("epoch_*.ckpt"))
    return {"data": data, "run": run, "ckpt": best, "metrics": metrics}


def config(name: str, run_dir: Path, *overrides: str):
    cfg = compose_train_config([*overrides, "+trainer.enable_progress_bar=false"], run_dir, config_name=name)
    GlobalHydra.instance().clear()
    return cfg


def test_training_run_keeps_class_names_and_the_augmentation(trained: dict) -> None:
    run = trained["run"]
    assert json.loads((run / "data.json").read_text())["class_names"] == ["cats", "dogs"]
    assert "HorizontalFlip" in (run / "augmentation.yaml").read_text()
    spec = DataSpec.from_dict(torch.load(trained["ckpt"], weights_only=True)["hyper_parameters"]["data"])
    assert spec.class_names == ("cats", "dogs") and spec.preprocessing.size == (32, 32)
    assert {"test/acc", "test/acc_tta"} <= set(trained["metrics"])
    assert trained["metrics"]["test/acc"] > 0.6  # the generated classes are easy: training did learn


def test_evaluate_reproduces_the_training_test_and_writes_its_files(trained: dict, tmp_path: Path) -> None:
    metrics = evaluate(config("evaluate", tmp_path, f"ckpt_path={trained['ckpt']}", "tta=hflip"))
    for key in ("test/acc", "test/acc_tta", "test/auroc", "test/auroc_tta", "test/loss"):
        assert metrics[key] == pytest.approx(trained["metrics"][key], abs=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(metrics)
    matrix = json.loads((tmp_path / "confusion_matrix.json").read_text())
    assert matrix["class_names"] == ["cats", "dogs"]
    counts = torch.tensor(matrix["matrix"])
    assert counts.sum() == 24  # the test folder: 12 + 12
    assert counts.trace() / counts.sum() == pytest.approx(metrics["test/acc_tta"])  # TTA predictions
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_confusion_matrix_counts_the_batches_its_metrics_saw(trained: dict, tmp_path: Path) -> None:
    cfg = config("evaluate", tmp_path, f"ckpt_path={trained['ckpt']}", "trainer.limit_test_batches=1")
    metrics = evaluate(cfg)
    counts = torch.tensor(json.loads((tmp_path / "confusion_matrix.json").read_text())["matrix"])
    assert counts.sum() == 8  # one batch of 8, not the 24 test images: no second, unlimited pass
    assert counts.trace() / counts.sum() == pytest.approx(metrics["test/acc"])
    page = (tmp_path / "report.html").read_text()
    assert 'id="confusion-matrix"' in page and "cnn-zoo-evaluate" in page
    assert json.loads((tmp_path / "run.json").read_text())["command"] == "evaluate"


def test_evaluate_without_tta_reports_plain_metrics_only(trained: dict, tmp_path: Path) -> None:
    metrics = evaluate(config("evaluate", tmp_path, f"ckpt_path={trained['ckpt']}"))
    assert "test/acc" in metrics and "test/acc_tta" not in metrics
    counts = torch.tensor(json.loads((tmp_path / "confusion_matrix.json").read_text())["matrix"])
    assert counts.trace() / counts.sum() == pytest.approx(metrics["test/acc"])


def test_evaluate_on_named_data_keeps_the_checkpoints_preprocessing(trained: dict, tmp_path: Path) -> None:
    other = make_image_folder(tmp_path / "other", layout="split", per_class=12, odd_files=False, seed=5)
    cfg = config(
        "evaluate", tmp_path / "run", f"ckpt_path={trained['ckpt']}", "data=image_folder",
        f"paths.data_dir={tmp_path}", f"data.folder={other.name}", "data.val_size=0.5",
        "data.image_size=64", "data.normalization=imagenet", "data.num_workers=0",
    )  # fmt: skip
    metrics = evaluate(cfg)
    counts = torch.tensor(json.loads((tmp_path / "run" / "confusion_matrix.json").read_text())["matrix"])
    assert counts.sum() == 12  # half of each class held out, tested on
    assert metrics["test/acc"] > 0.6  # 64 px / imagenet statistics would have broken the network


def test_predict_csv_matches_the_model_on_the_datamodules_eval_tensors(trained: dict, tmp_path: Path) -> None:
    folder = trained["data"] / "train" / "cats"
    table = predict(config("predict", tmp_path, f"ckpt_path={trained['ckpt']}", f"input={folder}"))
    with open(tmp_path / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "predicted", "prob_cats", "prob_dogs"]
    readable = {p for p in folder.iterdir() if p.name not in ("corrupt.jpg", "notes.txt")}
    assert {Path(r["path"]) for r in rows} == readable and len(table) == len(readable)
    unreadable = (tmp_path / "unreadable.txt").read_text()
    assert "corrupt.jpg" in unreadable and len(unreadable.splitlines()) == 1
    model = Classifier.load_from_checkpoint(trained["ckpt"], map_location="cpu", tta=None).eval()
    transform = eval_transform(model.hparams.data)  # the datamodule's own eval path
    for row in rows[:6]:
        x = transform(transform.decode(row["path"])).unsqueeze(0)
        expected = model.predict_step(x, 0)[0]
        got = torch.tensor([float(row["prob_cats"]), float(row["prob_dogs"])])
        assert torch.allclose(got, expected, atol=1e-5)
        assert row["predicted"] == ["cats", "dogs"][int(expected.argmax())]
    assert sum(r["predicted"] == "cats" for r in rows) > len(rows) / 2


def test_predict_collects_garbage_again_once_it_starts_predicting(trained: dict, tmp_path: Path) -> None:
    """The command's start-up pause of the collector (cnn_zoo.runtime.startup_gc) ends before the first batch."""
    image = next((trained["data"] / "test" / "dogs").iterdir())
    try:
        with startup_gc.paused_during_startup():
            predict(config("predict", tmp_path, f"ckpt_path={trained['ckpt']}", f"input={image}"))
            assert gc.isenabled()
    finally:
        gc.enable()


def test_predict_a_single_file_with_tta(trained: dict, tmp_path: Path) -> None:
    image = trained["data"] / "test" / "dogs" / "img_0001.png"
    plain = predict(config("predict", tmp_path / "a", f"ckpt_path={trained['ckpt']}", f"input={image}"))
    tta = predict(config("predict", tmp_path / "b", f"ckpt_path={trained['ckpt']}", f"input={image}", "tta=hflip"))
    assert len(plain) == len(tta) == 1
    assert plain.loc[0, "prob_cats"] + plain.loc[0, "prob_dogs"] == pytest.approx(1.0)
    assert tta.loc[0, "prob_dogs"] != pytest.approx(plain.loc[0, "prob_dogs"], abs=1e-9)


def test_datamodule_and_predict_preprocess_identically(trained: dict, compose_cfg) -> None:
    from cnn_zoo.training.pipeline import build_datamodule

    cfg = compose_cfg("data=catsdogs", f"paths.data_dir={trained['data'].parent}", *TINY)
    dm = build_datamodule(cfg)
    transform = eval_transform(torch.load(trained["ckpt"], weights_only=True)["hyper_parameters"]["data"])
    for index in (0, 5, len(dm.test_set) - 1):
        x, _ = dm.test_set[index]
        assert torch.equal(x, transform(transform.decode(dm.test_set.samples[index][0])))


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("evaluate", ["ckpt_path={tmp}/missing.ckpt"], "checkpoint not found: .*missing.ckpt"),
        ("evaluate", ["ckpt_path={tmp}/bogus.ckpt"], "cannot read checkpoint .*bogus.ckpt"),
        ("predict", ["ckpt_path={ckpt}", "input={tmp}/nowhere"], "input not found: .*nowhere"),
        ("predict", ["ckpt_path={ckpt}", "input={tmp}"], "no image files .* under"),
        ("predict", ["ckpt_path={ckpt}", "input={data}", "tta.merge=median"], "tta.merge must be one of"),
    ],
)
def test_user_mistakes_are_one_line(trained: dict, tmp_path: Path, name: str, overrides: list, message: str) -> None:
    (tmp_path / "bogus.ckpt").write_text("not a checkpoint")
    values = {"tmp": tmp_path, "ckpt": trained["ckpt"], "data": trained["data"]}
    overrides = [o.format(**values) for o in overrides]
    if "tta.merge=median" in overrides:
        overrides.insert(0, "tta=hflip")
    run = {"evaluate": evaluate, "predict": predict}[name]
    with pytest.raises(CnnZooError, match=message):
        run(config(name, tmp_path / "run", *overrides))


def test_command_lines_write_their_files_and_fail_in_one_line(trained: dict, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    ok = subprocess.run(
        [sys.executable, "-m", "cnn_zoo.predict", f"ckpt_path={trained['ckpt']}", f"input={trained['data'] / 'test'}",
         "tta=hflip_scale", f"hydra.run.dir={tmp_path / 'p'}"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len((tmp_path / "p" / "predictions.csv").read_text().splitlines()) == 1 + 24
    bad = subprocess.run(
        [sys.executable, "-m", "cnn_zoo.evaluate", f"ckpt_path={tmp_path / 'none.ckpt'}",
         f"hydra.run.dir={tmp_path / 'e'}"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: checkpoint not found:")
    assert "Traceback" not in bad.stderr
