"""The typed data contract: round trips, old checkpoints, declared network inputs, option/kind checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.data.spec import DataSpec, ImagePreprocessing, SequencePreprocessing, TextPreprocessing
from cnn_zoo.models import build_net
from cnn_zoo.models.conv1d import Conv1DNet
from cnn_zoo.models.interfaces import ScheduledNet
from cnn_zoo.predict import predict
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.training.inference import load_classifier
from tests.fixtures import digit_images
from tests.fixtures_sequences import telemetry_frame, write_csv

FIXTURES = Path(__file__).parent / "fixtures_data"
OLD = json.loads((FIXTURES / "old_expected.json").read_text())


def image_spec() -> DataSpec:
    return DataSpec(
        kind="image",
        class_names=("a", "b", "c"),
        input_shape=(1, 28, 28),
        input_dtype="float32",
        preprocessing=ImagePreprocessing(size=(28, 28), color_mode="grayscale", mean=(0.5,), std=(0.25,)),
    )


def text_spec() -> DataSpec:
    prep = TextPreprocessing(vocab=("<pad>", "<oov>", "good", "bad"), max_len=5, padding="post")
    return DataSpec(kind="text", class_names=("neg", "pos"), input_shape=(5,), input_dtype="int64", preprocessing=prep)


def sequence_spec(mode: str = "window") -> DataSpec:
    prep = SequencePreprocessing(
        feature_names=("f0", "f1", "diff_f0", "diff_f1"), mean=(1.0, 0.0, 0.0, 0.0), std=(2.0, 1.0, 1.0, 1.0),
        mode=mode, window=4 if mode == "window" else None, differences=True, reading={"header": False},
    )  # fmt: skip
    shape = (4, 4) if mode == "window" else (1, 4)
    return DataSpec(
        kind="sequence", class_names=("0", "1"), input_shape=shape, input_dtype="float32", preprocessing=prep
    )


@pytest.mark.parametrize("make", [image_spec, text_spec, sequence_spec])
def test_the_spec_round_trips_through_plain_values(make) -> None:
    spec = make()
    plain = spec.to_dict()
    torch.save(plain, "/dev/null")  # plain values only
    assert DataSpec.from_dict(json.loads(json.dumps(plain))) == spec
    assert plain["kind_module"] == f"cnn_zoo.data.kinds.{make().kind}"  # any process can import the kind again
    assert {"class_names", "num_classes", "input_shape", "input_dtype"} <= set(plain)


def test_each_network_gets_only_the_inputs_it_declares() -> None:
    """IMDB's `padding` and telemetry's `mode` used to land in Conv1DNet/TransferNet arguments of the same name."""
    text = text_spec()
    config = {"_target_": "cnn_zoo.models.conv1d.Conv1DNet", "embedding_dim": 4, "filters": [4], "kernel_size": 2}
    net = build_net(config, text)
    assert isinstance(net, Conv1DNet) and net.embedding.num_embeddings == 4
    assert isinstance(net.features[0], torch.nn.Conv1d)  # padding 'valid' (the model's), not the data's 'post'
    assert text.network_inputs()["vocab_size"] == 4 and "padding" not in text.network_inputs()
    assert "mode" not in sequence_spec().network_inputs()


def test_a_network_without_declared_inputs_is_refused_in_one_line() -> None:
    with pytest.raises(CnnZooError, match="does not declare the data inputs"):
        build_net({"_target_": "torch.nn.Identity"}, image_spec())


def test_transfer_net_declares_its_schedule_and_plain_nets_do_not() -> None:
    from cnn_zoo.models.lenet import LeNet
    from cnn_zoo.models.transfer import TransferNet

    assert issubclass(TransferNet, ScheduledNet) and not isinstance(LeNet(), ScheduledNet)


def test_sequence_preprocessing_gives_one_sample_per_window_end() -> None:
    prep = sequence_spec().preprocessing
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    samples, ends = prep.samples(x)
    assert samples.shape == (7, 4, 4) and ends.tolist() == list(range(3, 10))
    assert samples[0, 0].tolist() == [(v - 1) / 2 for v in (0, 2, 4, 6)]  # f0 standardised, rows 0..3
    assert samples[0, 2].tolist() == [0, 2, 2, 2]  # diff_f0 within the series


# ---------------------------------------------------------------------- checkpoints written by the old contract
def test_old_lenet_checkpoint_loads_and_predicts_as_before() -> None:
    model = load_classifier(FIXTURES / "old_lenet_mnist.ckpt")
    assert model.spec.kind == "image" and model.spec.preprocessing.color_mode == "grayscale"
    prep = model.spec.preprocessing
    images = torch.from_numpy(digit_images(np.arange(4), np.random.default_rng(7))).float() / 255
    x = ((images - prep.mean[0]) / prep.std[0]).unsqueeze(1)
    with torch.no_grad():
        probs = model.class_probabilities(model.probabilities(model(x)))
    assert torch.allclose(probs, torch.tensor(OLD["old_lenet_mnist"]), atol=1e-6)
    assert model.hparams["data"]["contract"] == 2  # re-saved in today's form


def test_old_text_and_telemetry_checkpoints_predict_from_files_as_before(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.csv"
    texts = ["A great, wonderful film!", "Awful and boring; I hated it.", "the plot of the movie"]
    reviews.write_text("id;text\n" + "".join(f'{i};"{t}"\n' for i, t in enumerate(texts)))
    series = write_csv(tmp_path / "series.csv", telemetry_frame(40, anomalies=((20, 30, 1),), seed=3))
    for name, source, ids in (("old_conv1d_imdb", reviews, [0, 1, 2]), ("old_conv1d_telemetry", series, None)):
        cfg = predict_cfg(tmp_path / name, f"ckpt_path={FIXTURES / name}.ckpt", f"input={source}")
        table = predict(cfg)
        probs = table[[c for c in table.columns if c.startswith("prob_")]].to_numpy()
        assert np.allclose(probs, OLD[name], atol=1e-5)
        assert table["row"].tolist() == (ids or list(range(15, 40)))  # telemetry: the row each window ends at


def predict_cfg(run: Path, *overrides: str):
    cfg = compose_train_config(list(overrides), run, config_name="predict")
    GlobalHydra.instance().clear()
    return cfg


# ---------------------------------------------------------------------- options that fit images only
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tta=hflip"], r"tta.views=\['hflip'\] applies to images only, and this data \(text\)"),
        (["augmentation=flip"], r"augmentation=\['HorizontalFlip'\] applies to images only"),
        (["model.channels_last=true"], "model.channels_last=true applies to images only"),
    ],
)
def test_image_only_options_with_text_are_one_line_errors(compose_cfg, tmp_path: Path, overrides, message) -> None:
    from cnn_zoo.train import train
    from tests.fixtures_sequences import make_imdb_tree

    data = make_imdb_tree(tmp_path / "data", per_class=6, test_per_class=4)
    cfg = compose_cfg(
        "data=imdb", f"paths.data_dir={data}", "data.max_len=20", "data.val_size=4", "data.num_words=50",
        "model=conv1d_text", "model.net.kernel_size=3", "model.net.pool_size=2", "debug=fdr", *overrides,
    )  # fmt: skip
    with pytest.raises(CnnZooError, match=message) as err:
        train(cfg)
    assert "\n" not in str(err.value)


def test_tta_on_a_telemetry_checkpoint_at_predict_is_refused(tmp_path: Path) -> None:
    series = write_csv(tmp_path / "series.csv", telemetry_frame(40, seed=3))
    ckpt = FIXTURES / "old_conv1d_telemetry.ckpt"
    cfg = predict_cfg(tmp_path / "p", f"ckpt_path={ckpt}", f"input={series}", "tta=hflip")
    with pytest.raises(CnnZooError, match=r"applies to images only, and this data \(sequence\)"):
        predict(cfg)


@pytest.mark.parametrize(
    ("name", "setting", "value"),
    [("fdr", "fast_dev_run", True), ("limit", "limit_train_batches", 4), ("overfit", "overfit_batches", 3),
     ("profiler", "profiler", "simple")],
)  # fmt: skip
def test_debug_group_sets_the_trainer_and_drops_callbacks_and_loggers(compose_cfg, name, setting, value) -> None:
    cfg = compose_cfg(f"debug={name}")
    assert cfg.trainer[setting] == value and cfg.trainer.accelerator == "cpu"
    assert not cfg.callbacks and not cfg.logger and cfg.trainer.enable_progress_bar is False


def test_debug_fdr_runs_the_whole_pipeline_on_one_batch(compose_cfg, mnist_root: Path) -> None:
    from cnn_zoo.train import train

    metrics = train(compose_cfg(f"paths.data_dir={mnist_root}", "data.val_size=60", "debug=fdr"))
    assert "test/acc" in metrics


def test_an_old_checkpoints_data_config_rebuilds_the_same_spec(tmp_path: Path, caplog) -> None:
    """The old config's `val_fraction`/`standardize` still instantiate (deprecated) and give the trained scaler."""
    import logging

    from cnn_zoo.training.inference import datamodule_for
    from tests.fixtures_sequences import make_channel

    model = load_classifier(FIXTURES / "old_conv1d_telemetry.ckpt")
    make_channel(tmp_path)  # the generator and seed the fixture checkpoint was trained on
    old = dict(model.spec.datamodule, path=[str(tmp_path / "C-1_test.csv")])
    with caplog.at_level(logging.WARNING):
        datamodule = datamodule_for(model.spec.with_datamodule(old), None)
    assert "data.val_fraction is deprecated" in caplog.text and "data.standardize is deprecated" in caplog.text
    assert datamodule.spec.preprocessing == model.spec.preprocessing.__class__(
        **{**vars(model.spec.preprocessing), "reading": datamodule.spec.preprocessing.reading}
    )
