"""Transfer learning: a pretrained convolutional base (VGG or ResNet, torchvision or timm) under a new head.

The backbone is the library model built by its own builder without its classifier (VGG16: `features`,
14,714,688 parameters; ResNet50: everything before the pooling, 23,508,032), so its state-dict keys are the
library's and pretrained files load as they are. The head is the notes': VGG16 Flatten-Dense(256)-Dropout(0.5)
-Dense(1), ResNet50 global average pooling-Dense(1).

Two modes:
- `frozen` (feature extraction): the backbone never trains, stays in eval mode (BatchNorm statistics untouched),
  runs without autograd, and the optimizer only sees the head. Without train-time augmentation its features are
  memoised by the content of the input image (`FeatureCache`): the first epoch computes them, later epochs and
  validations only run the head, whatever the datamodule or shuffling.
- `finetune`: `freeze_epochs` frozen epochs (cached as above), then the top `unfreeze_blocks` blocks (or all) train
  with `backbone_lr_scale` times the learning rate. The optimizer holds the backbone's group from the start and
  the phase is a function of the epoch only (`on_train_epoch_start`, called by the Classifier), so a run resumed
  from a checkpoint gets the right `requires_grad` and optimizer state without any optimizer surgery.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from cnn_zoo.models.feature_cache import FeatureCache
from cnn_zoo.models.layers import dense_stack, flat_size
from cnn_zoo.models.weights import (
    HEAD_NAMES,
    imagenet_file,
    imagenet_state_dict,
    imagenet_weights,
    load_backbone_weights,
    read_state_dict,
)
from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)

FAMILIES = ("vgg", "resnet")
SOURCES = ("torchvision", "timm")
MODES = ("frozen", "finetune")
BATCHNORM = ("frozen", "train")
POOLS = ("flatten", "avg")


def library_model(arch: str, source: str, in_channels: int, kwargs: dict[str, Any]) -> nn.Module:
    """`arch` from torchvision's or timm's model builder, randomly initialised (weights are loaded afterwards)."""
    if not arch.startswith(FAMILIES):
        raise CnnZooError(f"model.net.arch must be a VGG or ResNet ({', '.join(FAMILIES)}...), got {arch!r}")
    if source not in SOURCES:
        raise CnnZooError(f"model.net.source must be one of {SOURCES}, got {source!r}")
    try:
        if source == "timm":
            import timm

            return timm.create_model(arch, pretrained=False, **{"in_chans": in_channels, **kwargs})
        if in_channels != 3:
            raise CnnZooError(
                f"torchvision's {arch} takes 3-channel images, the data has {in_channels}: use model.net.source=timm "
                "(it adapts the first convolution to in_chans)"
            )
        import torchvision

        return torchvision.models.get_model(arch, weights=None, **kwargs)
    except CnnZooError:
        raise
    except Exception as err:  # unknown arch names and bad builder arguments come as several types
        raise CnnZooError(f"cannot build {source} model {arch!r}: {str(err).splitlines()[0]}") from err


def trunk(model: nn.Module) -> nn.Sequential:
    """The model's children before its pooling and classifier, keeping their names (and so the state-dict keys)."""
    return nn.Sequential(OrderedDict((n, m) for n, m in model.named_children() if n not in HEAD_NAMES))


def block_prefixes(backbone: nn.Sequential, arch: str) -> list[list[str]]:
    """The backbone's blocks, bottom to top, as module-name prefixes: what `unfreeze_blocks` counts from the top.

    VGG: the convolutions up to each max pooling (VGG16: block1..block5, as Keras names them); ResNet: the stem,
    then layer1..layer4.
    """
    if arch.startswith("vgg"):
        blocks: list[list[str]] = [[]]
        for name, module in backbone.features.named_children():
            blocks[-1].append(f"features.{name}")
            if isinstance(module, nn.MaxPool2d):
                blocks.append([])
        return [b for b in blocks if b]
    stem = [n for n, _ in backbone.named_children() if not n.startswith("layer")]
    return [stem] + [[n] for n, _ in backbone.named_children() if n.startswith("layer")]


def count(params: Any) -> int:
    return sum(p.numel() for p in params)


class PhasedFineTuning:
    """The frozen-then-fine-tuned schedule shared by the transfer networks (`TransferNet`, `BackboneNet`).

    A network keeps `mode`, `freeze_epochs`, `unfrozen`, `schedulable` (the body's parameter names that ever
    train), `cache` and `source`, and says which module is the pretrained body and how it is named in the log.
    """

    mode: str
    freeze_epochs: int
    unfrozen: bool
    schedulable: set[str]
    cache: FeatureCache | None
    source: str

    def pretrained_body(self) -> nn.Module:
        raise NotImplementedError

    def backbone_label(self) -> str:
        raise NotImplementedError

    def phase_details(self, unfrozen: bool) -> str:
        """More words for the phase's log line (what part of the body trains)."""
        return ""

    @contextmanager
    def gradients_through(self) -> Iterator[None]:
        """Autograd through the body, no feature cache, inside the block (Grad-CAM, saliency); the phase
        (which parameters train) is left as it is (`BackboneWithoutGradients`)."""
        saved = self.unfrozen
        self.unfrozen = True  # `features`: the body with autograd, no cache
        try:
            yield
        finally:
            self.unfrozen = saved

    def on_train_epoch_start(self, epoch: int) -> None:
        """The phase of `epoch`: frozen before `freeze_epochs`, then fine-tuning (idempotent, so resumes are right)."""
        self.set_phase(self.mode == "finetune" and epoch >= self.freeze_epochs)

    def set_phase(self, unfrozen: bool, announce: bool = False) -> None:
        changed = unfrozen != self.unfrozen
        self.unfrozen = unfrozen
        for name, param in self.pretrained_body().named_parameters():
            param.requires_grad_(unfrozen and name in self.schedulable)
        if unfrozen and self.cache is not None:
            self.cache.clear()  # the body's weights now change: its old outputs are stale
        self.train(self.training)  # type: ignore[attr-defined]
        if changed or announce:
            params = list(self.parameters())  # type: ignore[attr-defined]
            trainable = count(p for p in params if p.requires_grad)
            log.info(
                "%s backbone (%s) %s: %s trainable, %s frozen parameters%s",
                self.backbone_label(),
                self.source,
                "fine-tuning" if unfrozen else "frozen",
                f"{trainable:,}",
                f"{count(params) - trainable:,}",
                self.phase_details(unfrozen),
            )

    def prepare_distributed(self, find_unused_parameters: bool) -> None:
        """Before DDP wraps the net: it keeps in sync only the parameters that require grad at that moment."""
        if not self.schedulable:
            return
        if self.freeze_epochs > 0 and not find_unused_parameters:
            raise CnnZooError(
                "fine-tuning after frozen epochs under DDP needs trainer.strategy.find_unused_parameters=true "
                "(the backbone gets no gradients while frozen); the finetune model configs set "
                "model.ddp_find_unused_parameters=true, which conf/trainer/ddp*.yaml read"
            )
        for name, param in self.pretrained_body().named_parameters():
            param.requires_grad_(name in self.schedulable)


class TransferNet(PhasedFineTuning, nn.Module):
    """Pretrained backbone + new head, frozen or fine-tuned on a schedule (see the module's docstring).

    Implements `ScheduledNet`, `PretrainedNet` and `ExportableNet` (cnn_zoo.models.interfaces).
    """

    data_inputs = ("num_outputs", "in_channels", "input_size", "normalization", "train_augmentation")

    def __init__(
        self,
        arch: str = "vgg16",
        source: str = "torchvision",
        weights: str | None = "imagenet",
        weights_path: str | None = None,
        load_weights: bool = True,
        pool: str = "flatten",
        dense: list[int] | tuple[int, ...] = (256,),
        dropout: float = 0.5,
        activation_name: str = "relu",
        mode: str = "frozen",
        freeze_epochs: int = 0,
        unfreeze_blocks: int | None = None,
        backbone_lr_scale: float = 0.1,
        batchnorm: str = "frozen",
        cache_features: bool = True,
        cache_max_gb: float = 4.0,
        backbone_kwargs: dict[str, Any] | None = None,
        in_channels: int = 3,
        input_size: list[int] | tuple[int, int] = (224, 224),
        num_outputs: int = 1,
        normalization: str | None = None,
        train_augmentation: bool = False,
    ) -> None:
        super().__init__()
        for name, value, allowed in (("mode", mode, MODES), ("batchnorm", batchnorm, BATCHNORM), ("pool", pool, POOLS)):
            if value not in allowed:
                raise CnnZooError(f"model.net.{name} must be one of {allowed}, got {value!r}")
        if int(freeze_epochs) < 0 or float(backbone_lr_scale) < 0:
            raise CnnZooError("model.net.freeze_epochs and model.net.backbone_lr_scale must be >= 0")
        self.arch, self.source, self.mode = arch, source, mode
        self.freeze_epochs = int(freeze_epochs)
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.batchnorm = batchnorm
        self.backbone = trunk(library_model(arch, source, int(in_channels), dict(backbone_kwargs or {})))
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.Identity()
        features = flat_size(nn.Sequential(self.backbone, self.pool), int(in_channels), list(input_size))
        self.head = dense_stack(features, list(dense), int(num_outputs), activation_name, float(dropout))
        if load_weights:
            self.load_pretrained(weights, weights_path, normalization)
        self.blocks = block_prefixes(self.backbone, arch)
        self.schedulable = self.trainable_when_unfrozen(unfreeze_blocks)
        # Train-time augmentation changes every training image each epoch: memoising those would only fill memory.
        self.cache = FeatureCache(float(cache_max_gb) * 1e9) if cache_features else None
        self.cache_training = cache_features and not train_augmentation
        self.register_load_state_dict_post_hook(TransferNet.forget_features)
        self.unfrozen = False
        self.set_phase(self.mode == "finetune" and self.freeze_epochs == 0, announce=True)

    # ----------------------------------------------------------------- weights
    @staticmethod
    def weights_file(config: dict[str, Any]) -> Any:
        """The file `load_pretrained` will read, located now (cnn_zoo.models.preprocessing: before any data)."""
        if config.get("weights_path"):
            from pathlib import Path

            path = Path(str(config["weights_path"])).expanduser()
            if not path.is_file():
                raise CnnZooError(f"weights file not found: {path}; set model.net.weights_path to a state dict file")
            return path
        weights = config.get("weights", "imagenet")
        return imagenet_file(str(config.get("arch", "vgg16")), weights) if weights else None

    @staticmethod
    def weights_preprocessing(config: dict[str, Any]) -> dict[str, Any] | None:
        """What torchvision's ImageNet weights of `arch` expect (`weights.transforms()`); None for random weights."""
        from cnn_zoo.models.backbone import torchvision_preprocessing

        weights = config.get("weights", "imagenet")
        if not weights and not config.get("weights_path"):
            return None
        arch = str(config.get("arch", "vgg16"))
        try:
            member = imagenet_weights(arch, weights or "imagenet")
        except CnnZooError:
            return None
        return torchvision_preprocessing(member, f"torchvision {arch} {member}.transforms()")

    def checkpoint_config(self, net_config: dict[str, Any]) -> dict[str, Any]:
        """Pretrained weights end up in the state dict: a checkpoint rebuilds the net without fetching them again."""
        return {**net_config, "load_weights": False}

    def prepare_export(self) -> None:
        """No feature cache in an exported graph (it is a host-side dict keyed by image bytes)."""
        self.cache = None
        self.eval()

    def load_pretrained(self, weights: str | None, weights_path: str | None, normalization: str | None) -> None:
        if weights_path:
            if weights is None:  # an easy slip when a scratch baseline reuses a transfer run's overrides
                log.warning("model.net.weights=null is ignored: model.net.weights_path=%s is loaded", weights_path)
            load_backbone_weights(self.backbone, read_state_dict(weights_path), str(weights_path))
        elif weights:
            load_backbone_weights(self.backbone, imagenet_state_dict(self.arch, weights), f"torchvision {weights}")
            if normalization not in (None, "imagenet"):  # the one warning: cnn_zoo.models.preprocessing's
                log.info(
                    "ImageNet weights expect ImageNet-normalised inputs: set data.normalization=imagenet (now %s)",
                    normalization,
                )
        else:
            log.warning(
                "model.net.weights=null: the %s backbone starts from RANDOM weights; this is training from scratch, "
                "not transfer learning",
                self.arch,
            )

    # ----------------------------------------------------------------- schedule
    def block_of(self, name: str) -> int | None:
        for index, prefixes in enumerate(self.blocks):
            if any(name == p or name.startswith(p + ".") for p in prefixes):
                return index
        return None

    def trainable_when_unfrozen(self, unfreeze_blocks: int | None) -> set[str]:
        """Backbone parameters that train once unfrozen: those of the top blocks, BatchNorm's only with `train`."""
        self.first_unfrozen = len(self.blocks)
        if self.mode == "frozen":
            return set()
        if unfreeze_blocks is not None and not 1 <= int(unfreeze_blocks) <= len(self.blocks):
            raise CnnZooError(
                f"model.net.unfreeze_blocks must be null (all) or 1..{len(self.blocks)} for {self.arch}, "
                f"got {unfreeze_blocks!r}"
            )
        first = len(self.blocks) - int(unfreeze_blocks) if unfreeze_blocks is not None else 0
        norms = {n for n, m in self.backbone.named_modules() if isinstance(m, _BatchNorm)}
        chosen = set()
        for name, _ in self.backbone.named_parameters():
            block = self.block_of(name)
            frozen_norm = self.batchnorm == "frozen" and name.rsplit(".", 1)[0] in norms
            if block is not None and block >= first and not frozen_norm:
                chosen.add(name)
        self.first_unfrozen = first
        return chosen

    def pretrained_body(self) -> nn.Module:
        return self.backbone

    def backbone_label(self) -> str:
        return self.arch

    def train(self, mode: bool = True) -> TransferNet:
        """Train mode for the head and the unfrozen blocks only: frozen layers (and frozen BatchNorm) stay in eval."""
        super().train(mode)
        if not mode:
            return self
        if not self.unfrozen:
            self.backbone.eval()
            return self
        for name, module in self.backbone.named_modules():
            block = self.block_of(name)
            frozen_block = block is not None and block < self.first_unfrozen
            if frozen_block or (isinstance(module, _BatchNorm) and self.batchnorm == "frozen"):
                module.eval()
        return self

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """Every group the schedule will ever train, from the start (the optimizer layout never changes)."""
        groups = [{"params": list(self.head.parameters()), "lr": lr, "name": "head"}]
        backbone = [p for n, p in self.backbone.named_parameters() if n in self.schedulable]
        if backbone:
            groups.append({"params": backbone, "lr": lr * self.backbone_lr_scale, "name": "backbone"})
        return groups

    def forget_features(self, *_: Any) -> None:
        """New weights (a checkpoint loaded into this net) make the cached features stale."""
        if self.cache is not None:
            self.cache.clear()

    def extract(self, x: Tensor) -> Tensor:
        return self.pool(self.backbone(x))

    def features(self, x: Tensor) -> Tensor:
        if self.unfrozen:
            return self.extract(x)
        with torch.no_grad():  # feature extraction: no autograd through the backbone
            if self.cache is not None and (self.cache_training or not self.training):
                return self.cache(x, self.extract)
            return self.extract(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

