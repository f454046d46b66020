"""`cnn_zoo.explain` and the interpretation pieces on checkpoints trained here on generated data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.data.kinds import RawInput, Sample
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.explain import explain
from cnn_zoo.interpretation.activations import activations
from cnn_zoo.interpretation.attribution import token_attributions
from cnn_zoo.interpretation.gradcam import gradcam
from cnn_zoo.interpretation.layers import find_layer
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.train import train
from cnn_zoo.training.inference import load_classifier
from tests.conftest import FAST, require_real
from tests.fixtures_sequences import make_channel, make_imdb_archive

QUIET = [*FAST, "logger=none", "callbacks.confusion_matrix=null", "callbacks.augmentation_preview=null"]


def explained(spec: DataSpec, path: Path, limit: int, start: int | None = None) -> list[Sample]:
    """What `explain` reads from `path`: the data kind's samples, as its one raw-input reader makes them."""
    return spec.data_kind.explained(spec, RawInput(path), limit, start)


def half_task_image(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Noise everywhere; class `spot` (1) has a bright 8x8 block somewhere in the bottom half, class `plain` none.

    Only the bottom half carries the class, so Grad-CAM for `spot` must look there.
    """
    image = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    if label == 1:
        top, left = rng.integers(size // 2, size - 8), rng.integers(0, size - 8)
        image[top : top + 8, left : left + 8] = 240
    return image


def make_half_task(root: Path, per_class: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("plain", "spot")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            Image.fromarray(half_task_image(label, rng)).save(root / name / f"{name}_{index:03d}.png")
    return root


def train_checkpoint(run: Path, *overrides: str) -> tuple[Path, dict]:
    cfg = compose_train_config([*QUIET, *overrides], run)
    metrics = train(cfg)
    GlobalHydra.instance().clear()
    return next((run / "checkpoints").glob("epoch_*.ckpt")), metrics


def explain_cfg(run_dir: Path, *overrides: str):
    cfg = compose_train_config(list(overrides), run_dir, config_name="explain")
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def half_task(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A binary small CNN trained in bf16 with channels_last on the half task (the cats/dogs pipeline)."""
    base = tmp_path_factory.mktemp("half_task")
    data = make_half_task(base / "data" / "half")
    ckpt, metrics = train_checkpoint(
        base / "run", "data=image_folder", f"paths.data_dir={data.parent}", "data.folder=half", "data.image_size=32",
        "data.validation_split=0.25", "data.test_split=0.25", "data.num_workers=0", "data.batch_size=8",
        "model=small_cnn", "model.net.filters=[8,16]", "model.net.dense=[]", "trainer.max_epochs=8",
        "optimizer.lr=3e-3", "trainer.precision=bf16-mixed", "model.channels_last=true",
        "callbacks.early_stopping=null", "callbacks.model_checkpoint.monitor=val/acc",
        "callbacks.model_checkpoint.mode=max",
    )  # fmt: skip
    return {"data": data, "ckpt": ckpt, "metrics": metrics, "run": base / "run"}


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory, mnist_root: Path) -> dict:
    """The course's mnist_cnn (32/64/64 filters), 10 classes, one epoch on the generated digits."""
    base = tmp_path_factory.mktemp("digits")
    ckpt, _ = train_checkpoint(
        base / "run", f"paths.data_dir={mnist_root}", "data.download=false", "data.val_size=60", "data.batch_size=32",
        "model=mnist_cnn", "trainer.max_epochs=1",
    )  # fmt: skip
    image = base / "digit.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (28, 28), dtype=np.uint8)).save(image)
    return {"ckpt": ckpt, "image": image}


def test_activation_grids_have_every_convolution_with_its_maps(digits: dict, tmp_path: Path) -> None:
    model = load_classifier(digits["ckpt"])
    x = explained(model.spec, digits["image"], 1)[0].x
    maps = activations(model, x)
    assert [(m.layer, m.shape) for m in maps] == [
        ("net.features.0", (32, 26, 26)),
        ("net.features.3", (64, 11, 11)),
        ("net.features.6", (64, 3, 3)),
    ]
    cfg = explain_cfg(tmp_path, f"ckpt_path={digits['ckpt']}", f"input={digits['image']}", "method=activations")
    index = explain(cfg)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == [f"digit_activations_net-features-{i}.png" for i in (0, 3, 6)]
    assert all(Image.open(tmp_path / name).size[0] > 200 for name in pngs)
    summary = json.loads((tmp_path / "explain.json").read_text())
    assert summary["inputs"] == 1 and summary["figures"] == 3
    assert summary["predictions"][0]["predicted"] in [str(d) for d in range(10)]
    assert 0.1 <= summary["predictions"][0]["probability"] <= 1.0  # the argmax of 10 classes
    assert index == tmp_path / "index.html"


def test_gradcam_matches_the_input_lies_in_0_1_and_finds_the_half_that_carries_the_class(half_task: dict) -> None:
    assert half_task["metrics"]["test/acc"] >= 0.9  # the task was learned: the heatmaps mean something
    model = load_classifier(half_task["ckpt"])
    assert model.hparams.channels_last and model.binary
    spots = explained(model.spec, half_task["data"] / "spot", 12)
    _, layer = find_layer(model, None)
    bottom_share = []
    for sample in spots:
        cam = gradcam(model, layer, sample.x, target=model.spec.class_index("spot"), binary=True)
        assert cam.shape == (1, *sample.x.shape[2:]) == (1, 32, 32)
        assert cam.min() >= 0.0 and cam.max() <= 1.0 and cam.max() > 0
        bottom_share.append(float(cam[0, 16:].sum() / cam[0].sum()))
    assert np.mean(bottom_share) > 0.7, bottom_share


def test_explain_gradcam_writes_one_png_per_class_and_an_index_that_shows_them(half_task: dict, tmp_path: Path) -> None:
    folder = half_task["data"] / "spot"
    cfg = explain_cfg(tmp_path, f"ckpt_path={half_task['ckpt']}", f"input={folder}", "method=gradcam", "target=all",
                      "max_inputs=3")  # fmt: skip
    index = explain(cfg).read_text()
    written = sorted(p.name for p in tmp_path.rglob("*.png"))
    assert len(written) == 3 * 2  # three images, both classes
    referenced = sorted(set(re.findall(r"src='([^']+\.png)'", index)))
    assert referenced == written
    assert index.count("predicted <b>") == 3 and "probability <b>" in index


def test_saliency_and_gradcam_for_a_chosen_class_and_layer(half_task: dict, tmp_path: Path) -> None:
    image = next((half_task["data"] / "plain").glob("*.png"))
    explain(explain_cfg(tmp_path / "s", f"ckpt_path={half_task['ckpt']}", f"input={image}", "method=saliency"))
    assert len(list((tmp_path / "s").glob("*_saliency_*.png"))) == 1
    cfg = explain_cfg(tmp_path / "g", f"ckpt_path={half_task['ckpt']}", f"input={image}", "method=gradcam",
                      "target=spot", "layer=net.features.0")  # fmt: skip
    explain(cfg)
    assert [p.name for p in (tmp_path / "g").glob("*.png")] == [f"{image.stem}_gradcam_spot.png"]


def test_bad_inputs_are_one_line_naming_the_choices(half_task: dict, tmp_path: Path) -> None:
    review = tmp_path / "review.txt"
    review.write_text("a great film")
    ckpt = f"ckpt_path={half_task['ckpt']}"
    with pytest.raises(CnnZooError, match=r"review.txt is not what this image model reads .*\.png"):
        explain(explain_cfg(tmp_path / "a", ckpt, f"input={review}"))
    with pytest.raises(CnnZooError, match=r"layer='head' is not a layer .*convolutions: \['net.features.0', "):
        explain(explain_cfg(tmp_path / "b", ckpt, f"input={half_task['data']}", "layer=head"))
    with pytest.raises(CnnZooError, match=r"output \(1, 1\) has no spatial axis for Grad-CAM; choose a convolution"):
        explain(explain_cfg(tmp_path / "e", ckpt, f"input={half_task['data']}", "layer=net.head.1"))
    with pytest.raises(CnnZooError, match=r"target='dog' is not a class .*\['plain', 'spot'\]"):
        explain(explain_cfg(tmp_path / "c", ckpt, f"input={half_task['data']}", "target=dog"))
    with pytest.raises(CnnZooError, match=r"method='lime' .*\['gradcam', 'activations', 'saliency'\]"):
        explain(explain_cfg(tmp_path / "d", ckpt, f"input={half_task['data']}", "method=lime"))
    result = subprocess.run(
        [sys.executable, "-m", "cnn_zoo.explain", ckpt, f"input={review}", f"hydra.run.dir={tmp_path / 'cli'}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: review.txt is not what this image model reads")
    assert "Traceback" not in result.stderr


def test_text_attributions_have_one_value_per_token(tmp_path: Path) -> None:
    data = make_imdb_archive(tmp_path / "data").parent
    ckpt, _ = train_checkpoint(
        tmp_path / "run", "data=imdb", f"paths.data_dir={data}", "data.max_len=40", "data.val_size=20",
        "data.batch_size=16", "data.num_words=200", "model=conv1d_text", "model.net.embedding_dim=16",
        "model.net.filters=[16,16]", "model.net.kernel_size=3", "model.net.pool_size=2", "trainer.max_epochs=3",
        "optimizer.lr=1e-2", f"paths.cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    review = tmp_path / "review.txt"
    review.write_text("A wonderful, moving film.<br />I loved it; the acting was great!")
    model = load_classifier(ckpt)
    sample = explained(model.spec, review, 1)[0]
    tokens = model.spec.data_kind.words(model.spec, sample.x[0])
    assert len(tokens) == 40 and [t for t in tokens if t][:2] == ["a", "wonderful"]
    result = token_attributions(model, sample.x, target=1, binary=True, steps=32)
    assert result.values.shape == (40,)
    assert torch.all(result.values[[i for i, t in enumerate(tokens) if not t]] == 0)  # padding = baseline
    assert result.delta < 0.05  # integrated gradients add up to score(review) - score(all padding)
    index = explain(explain_cfg(tmp_path / "ex", f"ckpt_path={ckpt}", f"input={review}", "method=saliency")).read_text()
    assert index.count("<span title=") == sum(1 for t in tokens if t)  # every word highlighted once
    assert "wonderful</span>" in index and "_saliency_" in index
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    with pytest.raises(CnnZooError, match=r"x.png is not what this text model reads \(.txt expected\)"):
        explain(explain_cfg(tmp_path / "bad", f"ckpt_path={ckpt}", f"input={image}"))


def test_sequence_attribution_per_feature_and_time_step(tmp_path: Path) -> None:
    channel = make_channel(tmp_path / "data" / "telemetry")
    ckpt, _ = train_checkpoint(
        tmp_path / "run", "experiment=telemetry_conv1d", f"paths.data_dir={channel.parent}",
        "data.path=[telemetry/C-1_train.csv,telemetry/C-1_test.csv]", "data.window=16", "trainer.max_epochs=2",
        "callbacks.early_stopping=null",
    )  # fmt: skip
    csv = channel / "C-1_test.csv"
    cfg = explain_cfg(tmp_path / "ex", f"ckpt_path={ckpt}", f"input={csv}", "method=saliency", "target=all")
    index = explain(cfg).read_text()
    pngs = sorted(p.name for p in (tmp_path / "ex").glob("*.png"))
    # the default window ends on the first anomalous row (60)
    assert pngs == [f"C-1_test_rows45-60_saliency_{c}.png" for c in ("contextual", "nominal", "point")]
    assert "true class <b>point</b>" in index and "completeness error" in index
    model = load_classifier(ckpt)
    sample = explained(model.spec, csv, 1, start=0)[0]
    assert sample.x.shape == (1, 4, 16) and sample.name == "C-1_test_rows0-15"
    explain(explain_cfg(tmp_path / "gc", f"ckpt_path={ckpt}", f"input={csv}", "method=gradcam", "start=0"))
    assert len(list((tmp_path / "gc").glob("C-1_test_rows0-15_gradcam_*.png"))) == 1
    with pytest.raises(CnnZooError, match=r"start=5000 is outside .*choose 0\.\.1184"):
        explain(explain_cfg(tmp_path / "bad", f"ckpt_path={ckpt}", f"input={csv}", "start=5000"))


def test_gradcam_through_a_frozen_backbone(tmp_path: Path) -> None:
    from tests.fixtures import make_image_folder
    from tests.fixtures_transfer import TINY

    data = make_image_folder(tmp_path / "data" / "pets", layout="folders", per_class=8, odd_files=False)
    ckpt, _ = train_checkpoint(
        tmp_path / "run", "data=catsdogs", f"paths.data_dir={data.parent}", "data.folder=pets", "data.image_size=32",
        "data.num_workers=0", "data.batch_size=8", "data.normalization=imagenet", "model=resnet50_frozen", *TINY,
        "trainer.max_epochs=1", "callbacks.early_stopping=null",
    )  # fmt: skip
    model = load_classifier(ckpt)
    sample = explained(model.spec, data / "test" / "dogs", 1)[0]
    name, layer = find_layer(model, None)
    assert name.startswith("net.backbone.")
    cam = gradcam(model, layer, sample.x, target=1, binary=True)
    assert cam.shape == (1, 32, 32) and 0.0 <= cam.min() <= cam.max() <= 1.0
    assert not model.net.unfrozen  # the frozen network is left as it was


def test_evaluate_writes_top_losses_in_loss_order_and_the_most_confused_table(half_task: dict, tmp_path: Path) -> None:
    """On a test folder with the class folders swapped, the accurate half-task model is wrong on most images."""
    from cnn_zoo.evaluate import evaluate

    rng = np.random.default_rng(5)
    swapped = tmp_path / "data" / "swapped"
    for split, count in (("train", 2), ("validation", 2), ("test", 10)):
        for label, folder in ((0, "spot"), (1, "plain")):
            (swapped / split / folder).mkdir(parents=True)
            for index in range(count):
                Image.fromarray(half_task_image(label, rng)).save(swapped / split / folder / f"{index}.png")
    overrides = [f"ckpt_path={half_task['ckpt']}", "top_losses=8", "data=catsdogs", f"paths.data_dir={swapped.parent}",
                 "data.folder=swapped", "data.num_workers=0", "+trainer.enable_progress_bar=false"]  # fmt: skip
    cfg = compose_train_config(overrides, tmp_path / "eval", config_name="evaluate")
    GlobalHydra.instance().clear()
    metrics = evaluate(cfg)
    assert metrics["test/acc"] <= 0.3
    rows = [line.split("|") for line in (tmp_path / "eval" / "top_losses.md").read_text().splitlines()[4:]]
    assert len(rows) == 8  # capped at top_losses
    losses = [float(row[6]) for row in rows]
    assert losses == sorted(losses, reverse=True)
    assert all(row[3] != row[4] for row in rows)  # true != predicted: mistakes only
    assert Image.open(tmp_path / "eval" / "top_losses.png").size[0] > 400  # the grid with Grad-CAM overlays
    confused = (tmp_path / "eval" / "most_confused.md").read_text().splitlines()[4:]
    counts = {(row.split("|")[1].strip(), row.split("|")[2].strip()): int(row.split("|")[3]) for row in confused}
    assert sum(counts.values()) == round((1 - metrics["test/acc"]) * 20)


@pytest.mark.real_data
@pytest.mark.parametrize("differences", [False, True])
def test_a_real_telemetry_window_is_prepared_exactly_as_the_datamodule_prepares_it(differences: bool) -> None:
    """The sequence kind rebuilds, from the raw CSV and the spec alone, the very window the datamodule tests on."""
    from cnn_zoo.data.telemetry import TelemetryDataModule

    root = require_real("telemetry", "MSL")
    datamodule = TelemetryDataModule(
        data_dir=str(root.parent.parent), path=["telemetry/MSL/C-1_train.csv", "telemetry/MSL/C-1_test.csv"],
        class_names=["nominal", "point", "contextual"], window=32, differences=differences,
    )  # fmt: skip
    datamodule.setup("test")
    piece = next(p for p in datamodule.pieces["test"] if p.source.endswith("C-1_test.csv") and len(p) >= 33)
    # the piece's second window: its differences are taken inside the piece (the first row's is 0 there)
    sample = explained(datamodule.spec, root / "C-1_test.csv", 1, start=piece.first_line - 2 + 1)[0]
    assert torch.allclose(sample.x[0], torch.from_numpy(piece.x[1:33].T.copy()), atol=1e-5)
    assert sample.label == int(piece.y[32])


def test_the_default_layer_is_the_last_convolution_block_output() -> None:
    from torch import nn

    from cnn_zoo.models.small_cnn import SmallCNN
    from cnn_zoo.models.transfer import TransferNet

    name, layer = find_layer(SmallCNN(3, 1, (64, 64), (8, 16), batch_norm=True), None)  # Conv-BN-ReLU blocks
    assert name == "features.6" and isinstance(layer, nn.ReLU)  # conv 0, bn, relu, pool, conv 4, bn, relu 6
    resnet = TransferNet(arch="resnet18", weights=None, input_size=[32, 32])
    name, layer = find_layer(resnet, None)  # inside a residual block: the convolution itself
    assert name == "backbone.layer4.1.conv2" and isinstance(layer, nn.Conv2d)
