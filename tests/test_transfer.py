"""Transfer learning: backbones, offline weights, frozen feature extraction with its cache, fine-tuning schedule."""

from __future__ import annotations

import copy
import logging
import urllib.error
from pathlib import Path

import pytest
import torch
from lightning.pytorch.utilities.model_summary import ModelSummary
from omegaconf import OmegaConf

from cnn_zoo.models import weights as weights_module
from cnn_zoo.models.transfer import TransferNet, count
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.training.inference import load_classifier
from cnn_zoo.training.pipeline import build_classifier, build_datamodule, build_trainer
from tests.conftest import FAST, run_command
from tests.fixtures import make_image_folder
from tests.fixtures_transfer import TINY, PhaseRecorder, last_checkpoint_path, library_state, write_state


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/validation/test folders of 32x32 images, 8/4/4 per class."""
    return make_image_folder(
        tmp_path_factory.mktemp("transfer") / "pets", layout="folders", per_class=8, odd_files=False
    )


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache and no network: the download fails as it does on a machine without internet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(url: str, destination: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(weights_module, "download", no_network)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def image_cfg(compose_cfg, pets: Path, model: str, *extra: str):
    return compose_cfg(
        "data=catsdogs",
        f"paths.data_dir={pets.parent}",
        f"data.folder={pets.name}",
        "data.image_size=32",
        "data.num_workers=0",
        "data.batch_size=8",
        "data.normalization=imagenet",
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


# ----------------------------------------------------------------------------- architectures
@pytest.mark.parametrize(
    ("arch", "source", "pool", "backbone", "head"),
    [
        ("vgg16", "torchvision", "flatten", 14_714_688, 3_277_313),  # Keras: include_top=False; 5x5x512 -> 256 -> 1
        ("vgg16", "timm", "flatten", 14_714_688, 3_277_313),
        ("resnet50", "torchvision", "avg", 23_508_032, 2_049),
        ("resnet50", "timm", "avg", 23_508_032, 2_049),
    ],
)
def test_named_backbones_have_the_keras_parameter_counts(arch, source, pool, backbone, head) -> None:
    """At the notes' 180x180 with torchvision; timm's (same keys, same counts) at 32x32 to save time."""
    size = 180 if source == "torchvision" else 32
    dense = [256] if pool == "flatten" else []
    net = TransferNet(arch=arch, source=source, weights=None, pool=pool, dense=dense, input_size=[size, size])
    assert count(net.backbone.parameters()) == backbone
    if size == 180:
        assert count(net.head.parameters()) == head
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert [g["name"] for g in net.parameter_groups(1e-3)] == ["head"]  # feature extraction: the head only


@pytest.mark.parametrize(
    ("arch", "top_block", "trainable"),
    [
        ("vgg16", ["features.24", "features.26", "features.28"], 7_079_424),  # Keras' block5_conv1..3
        ("resnet50", ["layer4"], 14_942_208),  # layer4 without its BatchNorm (batchnorm=frozen)
    ],
)
def test_unfreeze_blocks_counts_from_the_top(arch, top_block, trainable) -> None:
    net = TransferNet(arch=arch, weights=None, mode="finetune", unfreeze_blocks=1, input_size=[32, 32])
    assert len(net.blocks) == 5
    assert {n.rsplit(".", 1)[0] for n in net.schedulable} <= {
        n for n, _ in net.backbone.named_modules() if n.startswith(tuple(top_block))
    }
    assert count(p for n, p in net.backbone.named_parameters() if n in net.schedulable) == trainable
    groups = net.parameter_groups(1e-3)
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 1e-3), ("backbone", pytest.approx(1e-4))]


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(CnnZooError, match="VGG or ResNet"):
        TransferNet(arch="densenet121", weights=None)
    with pytest.raises(CnnZooError, match="source=timm"):
        TransferNet(arch="resnet18", weights=None, in_channels=1, input_size=[28, 28])
    with pytest.raises(CnnZooError, match="unfreeze_blocks must be null"):
        TransferNet(arch="resnet18", weights=None, mode="finetune", unfreeze_blocks=9, input_size=[32, 32])
    with pytest.raises(CnnZooError, match="model.net.mode"):
        TransferNet(arch="resnet18", weights=None, mode="thaw")


# ----------------------------------------------------------------------------- weights
def test_weights_path_loads_torchvision_and_timm_layouts(tmp_path: Path) -> None:
    torchvision_state = library_state("resnet18", "torchvision", seed=1)
    timm_state = library_state("resnet18", "timm", seed=2)
    files = {
        "torchvision": (write_state(tmp_path / "tv.pth", torchvision_state), torchvision_state),
        "timm, training-script checkpoint": (
            write_state(tmp_path / "timm.pth", timm_state, wrap="state_dict", prefix="module."),
            timm_state,
        ),
    }
    for source in ("torchvision", "timm"):
        for path, state in files.values():
            net = TransferNet(arch="resnet18", source=source, weights_path=str(path), pool="avg", input_size=[32, 32])
            loaded = net.backbone.state_dict()
            assert loaded.keys() <= state.keys()
            assert all(torch.equal(loaded[k], state[k]) for k in loaded), (source, path)


def test_weights_path_mismatch_is_reported_clearly(tmp_path: Path) -> None:
    deeper = write_state(tmp_path / "r34.pth", library_state("resnet34", "torchvision"))
    with pytest.raises(CnnZooError, match=r"holds 96 backbone tensor\(s\) that the backbone lacks .* another arch"):
        TransferNet(arch="resnet18", weights_path=str(deeper), input_size=[32, 32])
    shallower = write_state(tmp_path / "r18.pth", library_state("resnet18", "torchvision"))
    with pytest.raises(CnnZooError, match=r"lacks \d+ of the backbone's \d+ tensors .* same arch"):
        TransferNet(arch="resnet34", weights_path=str(shallower), input_size=[32, 32])
    gray = write_state(tmp_path / "gray.pth", library_state("resnet18", "timm", in_chans=1))
    with pytest.raises(CnnZooError, match=r"differ in shape, e.g. conv1.weight is \[64, 1, 7, 7\]"):
        TransferNet(arch="resnet18", weights_path=str(gray), input_size=[32, 32])
    stranger = write_state(tmp_path / "x.pth", {"encoder.w": torch.zeros(3)})
    with pytest.raises(CnnZooError, match="no key of .* fits the backbone"):
        TransferNet(arch="resnet18", weights_path=str(stranger), input_size=[32, 32])
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(CnnZooError, match="cannot read weights file"):
        TransferNet(arch="resnet18", weights_path=str(tmp_path / "junk.pth"), input_size=[32, 32])
    with pytest.raises(CnnZooError, match="weights file not found"):
        TransferNet(arch="resnet18", weights_path=str(tmp_path / "absent.pth"), input_size=[32, 32])


def test_offline_without_cached_weights_is_one_actionable_line(offline: Path) -> None:
    with pytest.raises(CnnZooError) as info:
        TransferNet(arch="vgg16", weights="imagenet", input_size=[32, 32])
    message = str(info.value)
    assert "\n" not in message
    assert str(offline / "vgg16-397923af.pth") in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert "URLError" in message and "TORCH_HOME" in message
    assert "model.net.weights_path=" in message and "model.net.weights=null" in message


def test_imagenet_weights_come_from_the_hub_cache_without_network(offline: Path) -> None:
    state = library_state("resnet18", "torchvision", seed=3)
    write_state(offline / "resnet18-f37072fd.pth", state)  # the file name torchvision's enum URL gives
    net = TransferNet(arch="resnet18", weights="imagenet", pool="avg", input_size=[32, 32])
    assert torch.equal(net.backbone.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    with pytest.raises(CnnZooError, match="not one of resnet18's weights"):
        TransferNet(arch="resnet18", weights="IMAGENET1K_V9", input_size=[32, 32])


def test_random_weights_warn_that_this_is_not_transfer_learning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        TransferNet(arch="resnet18", weights=None, input_size=[32, 32])
    assert "RANDOM weights" in caplog.text and "not transfer learning" in caplog.text


# ----------------------------------------------------------------------------- frozen: feature extraction
def test_frozen_training_changes_only_the_head(compose_cfg, pets: Path) -> None:
    cfg = image_cfg(compose_cfg, pets, "resnet50_frozen", *TINY, "model.net.cache_features=false")
    datamodule = build_datamodule(cfg)
    model = build_classifier(cfg, datamodule.spec)
    backbone_before = copy.deepcopy(model.net.backbone.state_dict())  # BatchNorm running statistics included
    head_before = copy.deepcopy(model.net.head.state_dict())
    summary = ModelSummary(model)
    assert summary.trainable_parameters == count(model.net.head.parameters())
    assert summary.total_parameters - summary.trainable_parameters == count(model.net.backbone.parameters())
    trainer = build_trainer(cfg)
    trainer.fit(model, datamodule=datamodule)
    after = model.net.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in backbone_before.items())
    assert not all(torch.equal(model.net.head.state_dict()[k], v) for k, v in head_before.items())
    (optimizer,) = trainer.optimizers
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in model.net.head.parameters()}
    model.train()  # what Lightning does each epoch: the backbone stays in eval mode
    assert model.net.head.training and not any(m.training for m in model.net.backbone.modules())


def test_cached_features_give_the_uncached_logits(compose_cfg, pets: Path) -> None:
    torch.manual_seed(0)
    cached = TransferNet(arch="resnet18", weights=None, pool="flatten", dense=[16], dropout=0.0, input_size=[32, 32])
    plain = copy.deepcopy(cached)
    plain.cache = None
    x = torch.randn(6, 3, 32, 32)
    for net in (cached, plain):
        net.train()
    first = cached(x)
    assert (cached.cache.hits, cached.cache.misses) == (0, 6)
    again = cached(torch.cat([x[3:], x[:3]]))  # reordered, as a shuffled epoch would
    assert (cached.cache.hits, cached.cache.misses) == (6, 6)
    assert torch.equal(first, plain(x))
    assert torch.allclose(again, torch.cat([first[3:], first[:3]]), atol=1e-6)  # the head's matmul blocks rows
    first.sum().backward()  # the head trains on cached features
    assert cached.head[1].weight.grad is not None

    # training through Lightning: the second epoch and the validations read the cache
    model, _ = fit(image_cfg(compose_cfg, pets, "resnet50_frozen", *TINY))
    cache = model.net.cache
    assert cache.misses <= 16 + 8 + 1  # each training and validation image once (+ the summary's zeros)
    assert cache.hits >= 16 + 8


def test_augmented_training_images_are_not_cached(compose_cfg, pets: Path) -> None:
    model, _ = fit(image_cfg(compose_cfg, pets, "resnet50_frozen", *TINY, "augmentation=flip"))
    assert model.net.cache_training is False
    assert len(model.net.cache.store) <= 8 + 1  # validation images only


# ----------------------------------------------------------------------------- fine-tuning schedule
def test_phase_switch_at_the_configured_epoch_and_after_resume(compose_cfg, pets: Path, tmp_path: Path) -> None:
    finetune = [*TINY, "model.net.freeze_epochs=1", "model.net.unfreeze_blocks=1", "optimizer.lr=0.01"]
    recorder = PhaseRecorder()
    model, trainer = fit(
        image_cfg(compose_cfg, pets, "resnet50_finetune", *finetune, "trainer.max_epochs=1"), callbacks=[recorder]
    )
    frozen = recorder.epochs[0]
    assert frozen["trainable"] == set() and frozen["backbone_training"] == set()
    assert [name for name, _, _ in frozen["groups"]] == ["head", "backbone"]  # the layout is fixed from the start
    last = last_checkpoint_path(trainer)
    before = {k: v.clone() for k, v in model.net.backbone.state_dict().items()}

    # a fresh process's view: a new model from the config, resumed from the checkpoint at epoch 1 (>= freeze_epochs)
    resumed_recorder = PhaseRecorder()
    model, trainer = fit(
        image_cfg(compose_cfg, pets, "resnet50_finetune", *finetune, "trainer.max_epochs=2"),
        ckpt_path=str(last),
        callbacks=[resumed_recorder],
    )
    assert sorted(resumed_recorder.epochs) == [1]
    for phase in resumed_recorder.epochs.values():
        assert phase["trainable"] == model.net.schedulable
        assert {n.split(".")[0] for n in phase["trainable"]} == {"layer4"}
        assert not any(".bn" in n or "downsample.1" in n for n in phase["trainable"])  # BatchNorm stays frozen
        assert phase["groups"] == frozen["groups"]
        assert [lr for _, lr, _ in phase["groups"]] == [0.01, pytest.approx(0.01 * 0.01)]
        assert not any(n.startswith(("layer1", "layer2", "layer3", "bn1")) for n in phase["backbone_training"])
    optimizer_state = trainer.optimizers[0].state
    assert sum(p in optimizer_state for p in model.net.backbone.parameters()) == len(model.net.schedulable)
    after = model.net.backbone.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"layer4"}  # the top block trained; everything below (and its statistics) did not


def test_checkpoint_rebuilds_without_fetching_pretrained_weights(compose_cfg, pets: Path, offline: Path) -> None:
    write_state(offline / "resnet18-f37072fd.pth", library_state("resnet18", "torchvision"))
    cfg = image_cfg(compose_cfg, pets, "resnet50_frozen", "model.net.arch=resnet18", "trainer.max_epochs=1")
    model, trainer = fit(cfg)
    (offline / "resnet18-f37072fd.pth").unlink()  # e.g. predicting on another machine
    restored = load_classifier(last_checkpoint_path(trainer))
    assert restored.hparams.net["weights"] == "imagenet"  # the record of what training started from
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.allclose(restored(x), model(x))


def test_distributed_fine_tuning_needs_find_unused_parameters(compose_cfg) -> None:
    net = TransferNet(arch="resnet18", weights=None, mode="finetune", freeze_epochs=2, input_size=[32, 32])
    with pytest.raises(CnnZooError, match="find_unused_parameters=true"):
        net.prepare_distributed(find_unused_parameters=False)
    net.prepare_distributed(find_unused_parameters=True)
    assert {n for n, p in net.backbone.named_parameters() if p.requires_grad} == net.schedulable  # DDP syncs them
    net.on_train_epoch_start(0)
    assert not any(p.requires_grad for p in net.backbone.parameters())
    finetune = compose_cfg("model=vgg16_finetune", "trainer=ddp_cpu")
    assert finetune.trainer.strategy.find_unused_parameters is True
    assert compose_cfg("trainer=ddp_cpu").trainer.strategy.find_unused_parameters is False


def test_fine_tuning_under_ddp_switches_phase_in_both_processes(pets: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp_run"
    args = [
        "trainer=ddp_cpu",  # find_unused_parameters follows the finetune model config
        "model=resnet50_finetune",
        *TINY,
        "model.net.freeze_epochs=1",
        "data=catsdogs",
        f"data.folder={pets.name}",
        "data.image_size=32",
        "data.num_workers=0",
        "data.batch_size=8",
        "data.normalization=imagenet",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run}",
        "logger=none",
        "callbacks.rich_progress_bar=null",
        "callbacks.model_summary=null",
        "+trainer.enable_progress_bar=false",
    ]
    result = run_command("cnn_zoo.train", *args, data_dir=pets.parent, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    for log_file in ("train.log", "train_rank1.log"):
        assert "resnet18 backbone (torchvision) fine-tuning" in (run / log_file).read_text()
    assert (run / "metrics.json").is_file()


@pytest.mark.parametrize("name", ["vgg16_frozen", "vgg16_finetune", "resnet50_frozen", "resnet50_finetune"])
def test_experiments_compose(compose_cfg, name: str) -> None:
    arch, mode = name.split("_")
    cfg = compose_cfg(f"experiment=catsdogs_{name}")
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    assert net["_target_"] == "cnn_zoo.models.transfer.TransferNet"
    assert (net["arch"], net["mode"], net["weights"]) == (arch, mode, "imagenet")
    assert cfg.data.normalization == "imagenet" and cfg.data.folder == "cats_and_dogs_small"
    assert (cfg.augmentation.transforms == []) is (mode == "frozen")  # frozen: cached features need fixed images
