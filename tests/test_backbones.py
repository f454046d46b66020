"""Any timm / torchvision backbone: weights from the Hub cache, the torch hub cache or a file, offline; preprocessing
from the weights; frozen features cached; fine-tuning by parameter groups across a resume; Grad-CAM; export.

No pretrained weights exist here: the tests make them (timm's `test_*` models and torchvision's mobilenet_v3_small,
randomly initialised with a seed) and place them where the libraries' caches keep them, with the network off.
"""

from __future__ import annotations

import json
import logging
import urllib.error
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.data import transforms
from cnn_zoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalization_stats
from cnn_zoo.interpretation.layers import NoSpatialLayer, find_layer
from cnn_zoo.models import weights as weights_module
from cnn_zoo.models.backbone import BackboneNet
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.training.inference import load_classifier
from cnn_zoo.training.pipeline import build_classifier, build_datamodule, build_trainer
from tests.conftest import FAST
from tests.fixtures import make_image_folder
from tests.fixtures_transfer import PhaseRecorder, hf_cache_model, last_checkpoint_path, library_state, write_state

RESNET = "test_resnet.r160_in1k"  # timm's own test models: real architectures, a few hundred thousand parameters
VIT = "test_vit.r160_in1k"
TORCHVISION = "mobilenet_v3_small"


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(
        tmp_path_factory.mktemp("backbones") / "pets", layout="folders", per_class=8, odd_files=False
    )


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty Hugging Face and torch hub caches under tmp_path, HF_HUB_OFFLINE=1, and no network for torch hub."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(url: str, destination: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(weights_module, "download", no_network)
    return tmp_path / "hf"


def timm_weights(hub: Path, name: str = RESNET, seed: int = 1) -> dict[str, torch.Tensor]:
    state = library_state(name, "timm", seed=seed)
    hf_cache_model(hub, f"timm/{name}", state)
    return state


def torchvision_weights(tmp_path: Path, seed: int = 2) -> dict[str, torch.Tensor]:
    state = library_state(TORCHVISION, "torchvision", seed=seed)
    write_state(tmp_path / "torch_home" / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth", state)
    return state


def equal_body(net: BackboneNet, state: dict[str, torch.Tensor]) -> bool:
    body = net.body.state_dict()
    return bool(body) and all(torch.equal(v, state[k]) for k, v in body.items())


def cfg_for(compose_cfg, pets: Path, model: str, *extra: str):
    return compose_cfg(
        "data=catsdogs",
        f"paths.data_dir={pets.parent}",
        f"data.folder={pets.name}",
        "data.num_workers=0",
        "data.batch_size=8",
        f"model={model}",
        "optimizer=adam",
        "logger=none",
        "callbacks.early_stopping=null",
        "callbacks.confusion_matrix=null",
        "callbacks.misclassified=null",
        "callbacks.augmentation_preview=null",
        *FAST,
        *extra,
    )


def fit(cfg, ckpt_path: str | None = None, callbacks=()):
    datamodule = build_datamodule(cfg)
    model = build_classifier(cfg, datamodule.spec)
    trainer = build_trainer(cfg, callbacks)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model, trainer


# ----------------------------------------------------------------------------- weights, offline
def test_weights_arrive_from_the_hub_cache_torch_hub_and_files(hub: Path, tmp_path: Path) -> None:
    state = timm_weights(hub)
    net = BackboneNet(name=RESNET, input_size=[32, 32])
    assert equal_body(net, state)  # through timm's pretrained=True, the Hub cache file as its overlay
    assert "fc.weight" not in net.body.state_dict()  # reset_classifier(0): the new head replaces it
    tv_state = torchvision_weights(tmp_path)
    tv = BackboneNet(name=TORCHVISION, weights="IMAGENET1K_V1", input_size=[32, 32])  # source auto: torchvision
    assert tv.source == "torchvision" and equal_body(tv, tv_state)
    from safetensors.torch import save_file

    save_file(state, tmp_path / "mine.safetensors")
    files = {
        "safetensors": tmp_path / "mine.safetensors",
        "pth": write_state(tmp_path / "mine.pth", state, wrap="state_dict", prefix="module."),
        "cnn_zoo ckpt": write_state(
            tmp_path / "run.ckpt", net.body.state_dict(), wrap="state_dict", prefix="net.body."
        ),
    }
    for kind, path in files.items():
        loaded = BackboneNet(name=RESNET, weights_path=str(path), input_size=[32, 32])
        assert equal_body(loaded, state), kind


def test_offline_without_cached_weights_is_one_line_naming_the_repo(hub: Path) -> None:
    with pytest.raises(CnnZooError) as info:
        BackboneNet(name=RESNET, input_size=[32, 32])
    message = str(info.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message
    assert "timm/test_resnet.r160_in1k" in message and "model.safetensors" in message
    assert str(hub / "hub" / "models--timm--test_resnet.r160_in1k" / "snapshots") in message
    with pytest.raises(CnnZooError, match=r"mobilenet_v3_small-047dcff4\.pth at .*torch_home/hub/checkpoints"):
        BackboneNet(name=TORCHVISION, weights="IMAGENET1K_V1", input_size=[32, 32])
    with pytest.raises(CnnZooError, match="not a timm model"):
        BackboneNet(name="no_such_net_v9", input_size=[32, 32])


@pytest.mark.parametrize("model", ["timm_frozen", "vgg16_frozen"])
def test_missing_weights_are_reported_before_any_image_is_decoded(
    compose_cfg, pets: Path, hub: Path, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    decoded: list[Path] = []
    real = transforms.decode_image
    monkeypatch.setattr(transforms, "decode_image", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k))
    cfg = cfg_for(compose_cfg, pets, model, f"model.net.name={RESNET}" if model == "timm_frozen" else "seed=1")
    with pytest.raises(CnnZooError) as info:
        build_datamodule(cfg)
    assert "\n" not in str(info.value) and ("timm/" in str(info.value) or "vgg16-397923af.pth" in str(info.value))
    assert decoded == []  # the data module was never built


# ----------------------------------------------------------------------------- preprocessing from the weights
def test_preprocessing_comes_from_the_weights_and_is_in_the_checkpoint(compose_cfg, pets: Path, hub: Path) -> None:
    timm_weights(hub)
    cfg = cfg_for(compose_cfg, pets, "timm_frozen", f"model.net.name={RESNET}", "trainer.max_epochs=1")
    assert cfg.data.image_size == "weights" and cfg.data.normalization == "weights"
    model, trainer = fit(cfg)
    prep = model.spec.preprocessing
    # timm's pretrained_cfg of test_resnet.r160_in1k: 160x160, bilinear, crop_pct 0.95, mean = std = 0.5
    assert (prep.size, prep.resize, prep.crop_pct) == ((160, 160), "bilinear", 0.95)
    assert (prep.mean, prep.std, prep.normalization) == ((0.5,) * 3, (0.5,) * 3, "weights")
    restored = load_classifier(last_checkpoint_path(trainer))
    assert restored.spec.preprocessing == prep and restored.spec.datamodule["crop_pct"] == 0.95
    image = restored.spec.preprocessing.transform()(
        restored.spec.preprocessing.transform().decode(next((pets / "test" / "cats").iterdir()))
    )
    assert tuple(image.shape) == (3, 160, 160) and float(image.min()) >= -1.0 - 1e-6  # (x/255 - 0.5) / 0.5


def test_torchvision_preprocessing_is_its_weights_transforms(compose_cfg, pets: Path, hub: Path, tmp_path) -> None:
    torchvision_weights(tmp_path)
    cfg = cfg_for(
        compose_cfg, pets, "torchvision_frozen", f"model.net.name={TORCHVISION}", "model.net.weights=IMAGENET1K_V1"
    )
    spec = build_datamodule(cfg).spec.preprocessing
    # MobileNet_V3_Small_Weights.IMAGENET1K_V1.transforms(): resize 256, crop 224, bilinear, ImageNet statistics
    assert (spec.size, spec.resize, spec.crop_pct) == ((224, 224), "bilinear", 224 / 256)
    assert spec.mean == pytest.approx(IMAGENET_MEAN) and spec.std == pytest.approx(IMAGENET_STD)


def test_an_explicit_setting_wins_with_one_warning(compose_cfg, pets: Path, hub: Path, caplog) -> None:
    timm_weights(hub)
    cfg = cfg_for(
        compose_cfg,
        pets,
        "timm_frozen",
        f"model.net.name={RESNET}",
        "data.image_size=32",
        "data.normalization=imagenet",
    )
    with caplog.at_level(logging.WARNING, logger="cnn_zoo.models.preprocessing"):
        spec = build_datamodule(cfg).spec.preprocessing
    assert spec.size == (32, 32) and spec.mean == pytest.approx(IMAGENET_MEAN)
    assert (spec.resize, spec.crop_pct) == ("bilinear", 0.95)  # what was not set still follows the weights
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "data.image_size=32" in warnings[0] and "data.normalization=imagenet" in warnings[0]
    assert "160x160" in warnings[0] and "Cost" in warnings[0] and "accuracy" in warnings[0]


@pytest.mark.parametrize(
    "overrides",
    [("model=vgg16_frozen", "data=catsdogs"), ("model=resnet50_finetune", "data=image_folder", "data.folder=flowers")],
)
def test_transfer_configs_compose_with_imagenet_normalisation(compose_cfg, overrides) -> None:
    """Issue 30: the headline command is right without an experiment file; the notes' size (180) stays."""
    cfg = compose_cfg(*overrides)
    assert cfg.data.normalization == "imagenet" and cfg.data.image_size == 180
    assert normalization_stats(cfg.data.normalization) == (IMAGENET_MEAN, IMAGENET_STD)
    scratch = compose_cfg("model=small_cnn", "data=catsdogs")
    assert (scratch.data.normalization, scratch.data.image_size, scratch.data.crop_pct) == ("rescale", 180, None)


# ----------------------------------------------------------------------------- frozen, fine-tuning, resume
def test_frozen_features_are_cached_for_any_backbone(compose_cfg, pets: Path, hub: Path) -> None:
    timm_weights(hub, VIT)
    model, _ = fit(cfg_for(compose_cfg, pets, "timm_frozen", f"model.net.name={VIT}", "data.image_size=32"))
    cache = model.net.cache
    assert cache.misses <= 16 + 8 + 1 and cache.hits >= 16 + 8  # epoch 2 and the validations read the cache
    assert not any(p.requires_grad for p in model.net.body.parameters())


def test_fine_tuning_unfreezes_top_groups_at_the_epoch_and_after_resume(compose_cfg, pets: Path, hub: Path) -> None:
    timm_weights(hub)
    finetune = [
        f"model.net.name={RESNET}",
        "data.image_size=32",
        "model.net.freeze_epochs=1",
        "model.net.unfreeze_groups=2",
        "model.net.layer_decay=0.5",
        "model.net.backbone_lr_scale=0.1",
        "optimizer.lr=0.01",
    ]
    recorder = PhaseRecorder()
    model, trainer = fit(
        cfg_for(compose_cfg, pets, "timm_finetune", *finetune, "trainer.max_epochs=1"), callbacks=[recorder]
    )
    frozen = recorder.epochs[0]
    assert frozen["trainable"] == set() and frozen["backbone_training"] == set()
    # timm's group_matcher(coarse=True) of a ResNet: stem, layer1..layer4; the top two train, lr decayed per group
    assert [(n, lr) for n, lr, _ in frozen["groups"]] == [
        ("head", 0.01),
        ("backbone.3", pytest.approx(0.01 * 0.1 * 0.5)),
        ("backbone.4", pytest.approx(0.01 * 0.1)),
    ]
    before = {k: v.clone() for k, v in model.net.body.state_dict().items()}
    resumed = PhaseRecorder()
    model, trainer = fit(
        cfg_for(compose_cfg, pets, "timm_finetune", *finetune, "trainer.max_epochs=2"),
        ckpt_path=str(last_checkpoint_path(trainer)),
        callbacks=[resumed],
    )
    assert sorted(resumed.epochs) == [1]
    phase = resumed.epochs[1]
    assert phase["trainable"] == model.net.schedulable and phase["groups"] == frozen["groups"]
    assert {n.split(".")[0] for n in phase["trainable"]} == {"layer3", "layer4"}
    assert not any(".bn" in n or "downsample.2" in n for n in phase["trainable"])  # BatchNorm stays frozen
    after = model.net.body.state_dict()
    assert {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])} == {"layer3", "layer4"}


# ----------------------------------------------------------------------------- explain and export
def test_gradcam_layer_from_feature_info_and_none_for_a_vit(hub: Path) -> None:
    resnet = BackboneNet(name=RESNET, weights=None, input_size=[64, 64])
    name, module = resnet.gradcam_layer([64, 64])
    assert name == "body.layer4" and module is resnet.body.layer4  # timm's feature_info: the deepest stage (2x2)
    assert resnet.gradcam_layer([32, 32])[0] == "body.layer3"  # at 32x32 layer4 is 1x1: no map, one stage lower
    assert BackboneNet(name=VIT, weights=None, input_size=[32, 32]).gradcam_layer([32, 32]) is None
    tv = BackboneNet(name=TORCHVISION, source="torchvision", weights=None, input_size=[32, 32])
    assert tv.gradcam_layer([32, 32])[0].startswith("body.features.")  # no feature_info: the last spatial conv


def test_explain_and_export_work_for_timm_backbones(compose_cfg, pets: Path, hub: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from cnn_zoo.explain import explain
    from cnn_zoo.export import export

    for name in (RESNET, VIT):
        timm_weights(hub, name)
        _, trainer = fit(
            cfg_for(
                compose_cfg, pets, "timm_frozen", f"model.net.name={name}", "data.image_size=32", "trainer.max_epochs=1"
            )
        )
        ckpt = last_checkpoint_path(trainer)
        model = load_classifier(ckpt)
        if name == RESNET:
            assert find_layer(model, None)[0] == "net.body.layer3"  # 32x32 inputs: layer4 is 1x1
        else:
            with pytest.raises(NoSpatialLayer):
                find_layer(model, None)
        run = tmp_path / f"explain_{name}"
        cfg = compose_train_config(
            [f"ckpt_path={ckpt}", f"input={pets / 'test' / 'dogs'}", "max_inputs=1", "steps=4"], run, "explain"
        )
        GlobalHydra.instance().clear()
        explain(cfg)
        summary = json.loads((run / "explain.json").read_text())
        assert summary["figures"] == 1
        figure = next(run.glob("*.png")).name
        assert ("gradcam" in figure) is (name == RESNET)  # the ViT: integrated gradients instead
        out = tmp_path / f"export_{name}"
        cfg = compose_train_config([f"ckpt_path={ckpt}", "format=onnx", f"output_dir={out}"], out, "export")
        GlobalHydra.instance().clear()
        path = export(cfg)
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["parity_max_abs_diff"] <= 1e-4 and meta["spec"]["preprocessing"]["crop_pct"] == 0.95


def test_experiment_composes(compose_cfg) -> None:
    cfg = compose_cfg("experiment=catsdogs_timm_finetune")
    assert cfg.model.net._target_ == "cnn_zoo.models.backbone.BackboneNet" and cfg.model.net.mode == "finetune"
    assert cfg.data.image_size == "weights" and cfg.data.folder == "cats_and_dogs_small"


def test_specs_written_before_crop_pct_decode_as_before(tmp_path: Path) -> None:
    """Every checkpoint written before this change has no `crop_pct`: its images are squashed to size, as then."""
    import numpy as np
    from PIL import Image

    from cnn_zoo.data.spec import DataSpec

    old = {
        "contract": 2,
        "kind": "image",
        "class_names": ["cats", "dogs"],
        "num_classes": 2,
        "input_shape": [3, 20, 20],
        "input_dtype": "float32",
        "preprocessing": {"size": [20, 20], "color_mode": "rgb", "normalization": "rescale", "resize": "bilinear"},
    }
    prep = DataSpec.from_dict(old).preprocessing
    assert prep.crop_pct is None
    wide = tmp_path / "wide.png"
    pixels = np.zeros((10, 40, 3), np.uint8)
    pixels[:, :10] = 255  # a white left quarter: squashing keeps it, a centre crop would cut it off
    Image.fromarray(pixels).save(wide)
    squashed = prep.transform().decode(wide)
    assert squashed.shape == (20, 20, 3) and squashed[:, :4].min() == 255
    cropped = transforms.decode_image(wide, [20, 20], 3, "bicubic", 1.0)
    assert cropped.shape == (20, 20, 3) and cropped[:, :].max() == 0  # shorter side to 20: width 80, centre 20


def test_group_fine_tuning_under_ddp_switches_phase_in_both_processes(pets: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from safetensors.torch import save_file

    weights = tmp_path / "resnet.safetensors"
    save_file(library_state(RESNET, "timm", seed=4), weights)
    run = tmp_path / "ddp_run"
    args = [
        "trainer=ddp_cpu",  # find_unused_parameters follows the finetune model config
        "model=timm_finetune",
        f"model.net.name={RESNET}",
        f"model.net.weights_path={weights}",
        "model.net.freeze_epochs=1",
        "data=catsdogs",
        f"data.folder={pets.name}",
        "data.image_size=32",
        "data.num_workers=0",
        "data.batch_size=8",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run}",
        "logger=none",
        "callbacks.rich_progress_bar=null",
        "callbacks.model_summary=null",
        "+trainer.enable_progress_bar=false",
    ]
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(pets.parent), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "cnn_zoo.train", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for log_file in ("train.log", "train_rank1.log"):
        text = (run / log_file).read_text()
        assert "test_resnet.r160_in1k backbone (timm) fine-tuning" in text and "top 2 trainable" in text
    assert (run / "metrics.json").is_file()
