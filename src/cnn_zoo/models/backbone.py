"""Transfer learning from any timm model or torchvision classifier: pretrained body, new linear head.

`model.net.name` is a timm model name (`convnext_tiny.fb_in22k_ft_in1k`, `resnet50.a1_in1k`,
`mobilenetv3_large_100`...) or a torchvision classification model (`efficientnet_v2_s`) named with its weights enum
member (`model.net.weights=IMAGENET1K_V1`). The body is the library's own model with its classifier removed
(timm's `reset_classifier(0)`; torchvision's last Linear replaced by an identity), so its state-dict keys are the
library's and the pooled pre-logits features are what it outputs; the head is one Linear (with optional dropout)
for the data's classes.

Weights (offline first, `cnn_zoo.models.hub`): timm's pretrained tag through the Hugging Face Hub cache, then loaded
by timm itself (`pretrained=True` with the located file as `pretrained_cfg_overlay`: its in_chans adaptation and
classifier handling apply); torchvision's enum file through the torch hub cache; or `weights_path` (.safetensors,
.pth, a cnn_zoo .ckpt). The preprocessing the weights expect (`weights_preprocessing`) reaches the data before any
image is read (`cnn_zoo.models.preprocessing`).

Two modes, as `TransferNet`: `frozen` (the body never trains, stays in eval mode, its features memoised by
`FeatureCache` when training images are not augmented) and `finetune` (`freeze_epochs` frozen epochs, then the top
`unfreeze_groups` of the model's own parameter groups train: timm's `group_matcher`, torchvision's top-level
stages; each group's learning rate is `optimizer.lr * backbone_lr_scale * layer_decay ** (groups below the top)`;
BatchNorm stays frozen unless `batchnorm=train`). The optimizer holds every group from the start and the phase is
a function of the epoch only, so resumes land in the right phase and DDP works as for `TransferNet`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from cnn_zoo.models.feature_cache import FeatureCache
from cnn_zoo.models.transfer import BATCHNORM, MODES, PhasedFineTuning
from cnn_zoo.models.weights import imagenet_weights, load_backbone_weights, read_state_dict
from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)

SOURCES = ("auto", "timm", "torchvision")
PRETRAINED = ("default", "pretrained", "true", "True")  # timm: the name's pretrained tag


# ----------------------------------------------------------------------------- what the config names
def source_of(name: str, source: str, weights: Any) -> str:
    """`auto`: torchvision when `weights` is an enum member name (IMAGENET1K_V1, DEFAULT), else timm."""
    if source not in SOURCES:
        raise CnnZooError(f"model.net.source must be one of {SOURCES}, got {source!r}")
    if source != "auto":
        return source
    return "torchvision" if isinstance(weights, str) and weights.isupper() else "timm"


def pretrained_wanted(weights: Any) -> bool:
    return weights not in (None, False, "null", "none", "")


def timm_pretrained_cfg(name: str) -> dict[str, Any]:
    """timm's pretrained config for `name` (`arch` or `arch.tag`), without building the model."""
    import timm
    from timm.models import get_pretrained_cfg, is_model

    arch = name.split(".")[0]
    if not is_model(arch):
        close = timm.list_models(f"*{arch[:5]}*")[:6]
        raise CnnZooError(f"model.net.name={name!r} is not a timm model; e.g. {', '.join(close) or 'resnet50'}")
    cfg = get_pretrained_cfg(name, allow_unregistered=False)
    if cfg is None:
        tags = timm.list_pretrained(f"{arch}.*")[:6]
        raise CnnZooError(
            f"timm has no pretrained config {name!r}; its pretrained tags: {', '.join(tags) or 'none'} "
            "(model.net.weights=null trains from random weights)"
        )
    return cfg.to_dict()


def torchvision_member(name: str, weights: Any) -> Any:
    """The torchvision Weights enum member `weights` of model `name` (`DEFAULT` and `imagenet` accepted)."""
    member = "DEFAULT" if str(weights).lower() in ("default", "true", "pretrained") else str(weights)
    if member == "DEFAULT":
        try:
            import torchvision

            return torchvision.models.get_model_weights(name).DEFAULT
        except (ValueError, KeyError) as err:
            raise CnnZooError(f"torchvision has no model {name!r} with weights") from err
    return imagenet_weights(name, member)


def weights_file(config: dict[str, Any]) -> Path | None:
    """The pretrained file `config` (a `model.net` dict) loads: located (or downloaded) now, None without one.

    Called before the data is read, so that missing weights are one line before any image is decoded.
    """
    if config.get("weights_path"):
        path = Path(str(config["weights_path"])).expanduser()
        if not path.is_file():
            raise CnnZooError(f"weights file not found: {path}; set model.net.weights_path to a state dict file")
        return path
    weights = config.get("weights", "default")
    if not pretrained_wanted(weights):
        return None
    name = str(config.get("name"))
    from cnn_zoo.models.hub import hub_file, url_file

    if source_of(name, str(config.get("source", "auto")), weights) == "torchvision":
        member = torchvision_member(name, weights)
        return url_file(member.url, f"{name} weights {member}")
    cfg = timm_pretrained_cfg(name)
    if cfg.get("hf_hub_id"):
        files = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else None
        return hub_file(cfg["hf_hub_id"], *([files] if files else []))
    if cfg.get("url"):
        return url_file(cfg["url"], f"timm weights of {name}")
    raise CnnZooError(
        f"timm has no pretrained weights for {name!r}: pass model.net.weights_path=<file> or model.net.weights=null"
    )


def weights_preprocessing(config: dict[str, Any]) -> dict[str, Any] | None:
    """What the weights expect of the data: `image_size`, `interpolation`, `crop_pct`, `mean`, `std`, `origin`.

    timm: `timm.data.resolve_data_config` of the model's pretrained config; torchvision: the enum member's
    `transforms()` (resize_size / crop_size gives the crop fraction). None for random weights without a file.
    """
    weights = config.get("weights", "default")
    name = str(config.get("name"))
    if source_of(name, str(config.get("source", "auto")), weights) == "torchvision":
        if not pretrained_wanted(weights) and not config.get("weights_path"):
            return None
        member = torchvision_member(name, weights if pretrained_wanted(weights) else "DEFAULT")
        return torchvision_preprocessing(member, f"torchvision {name} {member}.transforms()")
    from timm.data import resolve_data_config

    # random weights too: the architecture's own default configuration (its input size, its statistics)
    cfg = timm_pretrained_cfg(name) if pretrained_wanted(weights) else timm_pretrained_cfg_or_none(name)
    if not cfg:
        return None
    data = resolve_data_config({}, pretrained_cfg=cfg)
    return {
        "image_size": [int(v) for v in data["input_size"][1:]],
        "interpolation": str(data["interpolation"]),
        "crop_pct": float(data["crop_pct"]) if data.get("crop_mode", "center") == "center" else None,
        "mean": [float(v) for v in data["mean"]],
        "std": [float(v) for v in data["std"]],
        "origin": f"timm {name} pretrained_cfg (resolve_data_config)",
    }


def torchvision_preprocessing(member: Any, origin: str) -> dict[str, Any]:
    transform = member.transforms()
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    return {
        "image_size": [crop, crop],
        "interpolation": str(transform.interpolation.value),
        "crop_pct": crop / resize,
        "mean": [float(v) for v in transform.mean],
        "std": [float(v) for v in transform.std],
        "origin": origin,
    }


# ----------------------------------------------------------------------------- the library model
def last_linear(model: nn.Module) -> str:
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise CnnZooError(f"{type(model).__name__} has no Linear classifier to replace; choose another model")
    return linears[-1]


def without_classifier(model: nn.Module, source: str) -> tuple[nn.Module, frozenset[str]]:
    """The model outputting its pooled pre-logits features, and the state-dict keys its classifier had."""
    before = set(model.state_dict())
    if source == "timm":
        model.reset_classifier(0)
    else:
        parent, _, child = last_linear(model).rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model, frozenset(before - set(model.state_dict()))


def library_body(
    name: str, source: str, file: Path | None, from_hub: bool, in_channels: int, input_size: list[int], kwargs: dict
) -> tuple[nn.Module, frozenset[str]]:
    """The library's model with pretrained weights from the Hub/torch hub `file` (`from_hub`), classifier removed."""
    try:
        if source == "timm":
            import timm

            options = {"in_chans": in_channels, **kwargs}
            if timm_pretrained_cfg_or_none(name).get("fixed_input_size"):
                options.setdefault("img_size", list(input_size))  # ViTs: position embeddings resampled on load
            overlay = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(file)}} if from_hub else {}
            model = timm.create_model(name, **overlay, **options)
        else:
            import torchvision

            if in_channels != 3:
                raise CnnZooError(f"torchvision's {name} takes 3-channel images, the data has {in_channels}: use timm")
            model = torchvision.models.get_model(name, weights=None, **kwargs)
            if from_hub and file is not None:
                model.load_state_dict(read_state_dict(file))
    except CnnZooError:
        raise
    except Exception as err:  # unknown names, bad builder arguments, files of another model: many types
        raise CnnZooError(f"cannot build {source} model {name!r}: {str(err).splitlines()[0][:300]}") from err
    return without_classifier(model, source)


def timm_pretrained_cfg_or_none(name: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name, allow_unregistered=True)
    return cfg.to_dict() if cfg is not None else {}


def parameter_groups_of(body: nn.Module, source: str) -> list[list[str]]:
    """The body's parameter names in groups, bottom to top: timm's `group_matcher(coarse=True)`; torchvision's
    top-level children, a Sequential's children each a group (its stages); direct parameters first."""
    names = [n for n, _ in body.named_parameters()]
    if source == "timm" and hasattr(body, "group_matcher"):
        from timm.models import group_parameters

        groups = [list(v) for v in group_parameters(body, body.group_matcher(coarse=True)).values()]
    else:
        groups = [[n for n, _ in body.named_parameters(recurse=False)]]
        for child_name, child in body.named_children():
            parts = child.named_children() if isinstance(child, nn.Sequential | nn.ModuleList) else [("", child)]
            for part_name, part in parts:
                prefix = ".".join(p for p in (child_name, part_name) if p)
                groups.append([f"{prefix}.{n}" for n, _ in part.named_parameters()])
    groups = [g for g in groups if g]
    grouped = {n for g in groups for n in g}
    if missing := [n for n in names if n not in grouped]:  # a matcher that misses some: they join the top
        groups[-1].extend(missing)
    return groups


# ----------------------------------------------------------------------------- the network
class BackboneNet(PhasedFineTuning, nn.Module):
    """Any timm / torchvision classifier's body + a new linear head, frozen or fine-tuned by parameter groups.

    Implements `ScheduledNet`, `PretrainedNet` and `ExportableNet` (cnn_zoo.models.interfaces), and
    `gradcam_layer` for `cnn_zoo.interpretation.layers.find_layer`.
    """

    data_inputs = ("num_outputs", "in_channels", "input_size", "train_augmentation")
    weights_file = staticmethod(weights_file)  # for cnn_zoo.models.preprocessing: before any data is read
    weights_preprocessing = staticmethod(weights_preprocessing)

    def __init__(
        self,
        name: str = "resnet50.a1_in1k",
        source: str = "auto",
        weights: str | None = "default",
        weights_path: str | None = None,
        load_weights: bool = True,
        mode: str = "frozen",
        freeze_epochs: int = 0,
        unfreeze_groups: int | None = None,
        backbone_lr_scale: float = 0.1,
        layer_decay: float | None = None,
        batchnorm: str = "frozen",
        head_dropout: float = 0.0,
        cache_features: bool = True,
        cache_max_gb: float = 4.0,
        backbone_kwargs: dict[str, Any] | None = None,
        in_channels: int = 3,
        input_size: list[int] | tuple[int, int] = (224, 224),
        num_outputs: int = 1,
        train_augmentation: bool = False,
    ) -> None:
        super().__init__()
        for key, value, allowed in (("mode", mode, MODES), ("batchnorm", batchnorm, BATCHNORM)):
            if value not in allowed:
                raise CnnZooError(f"model.net.{key} must be one of {allowed}, got {value!r}")
        if int(freeze_epochs) < 0 or float(backbone_lr_scale) < 0:
            raise CnnZooError("model.net.freeze_epochs and model.net.backbone_lr_scale must be >= 0")
        if layer_decay is not None and not 0 < float(layer_decay) <= 1:
            raise CnnZooError(f"model.net.layer_decay must be null or in (0, 1], got {layer_decay!r}")
        self.name, self.source = str(name), source_of(str(name), source, weights)
        self.mode, self.batchnorm = mode, batchnorm
        self.freeze_epochs, self.backbone_lr_scale = int(freeze_epochs), float(backbone_lr_scale)
        self.layer_decay = float(layer_decay) if layer_decay is not None else None
        config = {"name": name, "source": source, "weights": weights, "weights_path": weights_path}
        file = weights_file(config) if load_weights else None
        from_hub = file is not None and not weights_path
        size = [int(v) for v in input_size]
        self.body, head_keys = library_body(
            self.name, self.source, file, from_hub, int(in_channels), size, dict(backbone_kwargs or {})
        )
        if load_weights and weights_path:
            load_backbone_weights(self.body, read_state_dict(weights_path), str(weights_path), head_keys)
        elif load_weights and file is None:
            log.warning(
                "model.net.weights=null: the %s body starts from RANDOM weights; this is training from scratch, "
                "not transfer learning",
                self.name,
            )
        elif from_hub:
            log.info("%s weights loaded from %s", self.name, file)
        self.body.eval()
        with torch.no_grad():
            features = self.body(torch.zeros(1, int(in_channels), *size)).flatten(1).shape[1]
        self.head_drop = nn.Dropout(float(head_dropout))
        self.head = nn.Linear(features, int(num_outputs))
        self.groups = parameter_groups_of(self.body, self.source)
        self.schedulable = self.trainable_when_unfrozen(unfreeze_groups)
        self.cache = FeatureCache(float(cache_max_gb) * 1e9) if cache_features else None
        self.cache_training = cache_features and not train_augmentation
        self.register_load_state_dict_post_hook(BackboneNet.forget_features)
        self.unfrozen = False
        self.set_phase(self.mode == "finetune" and self.freeze_epochs == 0, announce=True)

    # ----------------------------------------------------------------- PretrainedNet / ExportableNet
    def checkpoint_config(self, net_config: dict[str, Any]) -> dict[str, Any]:
        """Pretrained weights end up in the state dict: a checkpoint rebuilds the net without fetching them."""
        return {**net_config, "load_weights": False}

    def prepare_export(self) -> None:
        self.cache = None
        self.eval()

    # ----------------------------------------------------------------- schedule
    def trainable_when_unfrozen(self, unfreeze_groups: int | None) -> set[str]:
        """Body parameters that train once unfrozen: the top groups', BatchNorm's only with `batchnorm=train`."""
        self.first_unfrozen = len(self.groups)
        if self.mode == "frozen":
            return set()
        if unfreeze_groups is not None and not 1 <= int(unfreeze_groups) <= len(self.groups):
            raise CnnZooError(
                f"model.net.unfreeze_groups must be null (all) or 1..{len(self.groups)} for {self.name}, "
                f"got {unfreeze_groups!r}"
            )
        self.first_unfrozen = len(self.groups) - int(unfreeze_groups) if unfreeze_groups is not None else 0
        norms = {n for n, m in self.body.named_modules() if isinstance(m, _BatchNorm)}
        chosen = set()
        for group in self.groups[self.first_unfrozen :]:
            for name in group:
                if not (self.batchnorm == "frozen" and name.rsplit(".", 1)[0] in norms):
                    chosen.add(name)
        return chosen

    def pretrained_body(self) -> nn.Module:
        return self.body

    def backbone_label(self) -> str:
        return self.name

    def phase_details(self, unfrozen: bool) -> str:
        trained = (len(self.groups) - self.first_unfrozen) if unfrozen else 0
        return f" ({len(self.groups)} groups, top {trained} trainable)"

    def train(self, mode: bool = True) -> BackboneNet:
        """Train mode for the head and what trains now: a module whose parameters are all frozen (with what it
        holds: dropout, drop-path) and frozen BatchNorm stay in eval mode."""
        super().train(mode)
        if not mode:
            return self
        if not self.unfrozen:
            self.body.eval()
            return self
        for module in self.body.modules():
            params = list(module.parameters())
            frozen = bool(params) and not any(p.requires_grad for p in params)
            if frozen or (isinstance(module, _BatchNorm) and self.batchnorm == "frozen"):
                module.eval()
        return self

    def group_lr_scales(self) -> list[float]:
        """Per group (bottom to top): backbone_lr_scale * layer_decay ** (groups above it)."""
        decay = self.layer_decay or 1.0
        top = len(self.groups) - 1
        return [self.backbone_lr_scale * decay ** (top - i) for i in range(len(self.groups))]

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """Every group the schedule will ever train, from the start (the optimizer layout never changes)."""
        groups = [{"params": [*self.head.parameters()], "lr": lr, "name": "head"}]
        named = dict(self.body.named_parameters())
        if self.layer_decay is None:
            params = [named[n] for g in self.groups for n in g if n in self.schedulable]
            if params:
                groups.append({"params": params, "lr": lr * self.backbone_lr_scale, "name": "backbone"})
            return groups
        for index, (group, scale) in enumerate(zip(self.groups, self.group_lr_scales(), strict=True)):
            params = [named[n] for n in group if n in self.schedulable]
            if params:
                groups.append({"params": params, "lr": lr * scale, "name": f"backbone.{index}"})
        return groups

    # ----------------------------------------------------------------- explain
    def gradcam_layer(self, input_size: list[int] | tuple[int, ...]) -> tuple[str, nn.Module] | None:
        """The deepest feature stage with a spatial (N, C, H, W) output: timm's `feature_info` modules, else every
        convolution; None when no stage is spatial (vision transformers: tokens), where integrated gradients apply."""
        info = getattr(self.body, "feature_info", None)
        names = [str(f["module"]) for f in info] if isinstance(info, list) and info else []
        channels = {str(f["module"]): f.get("num_chs") for f in info} if names else {}
        if not names:
            names = [n for n, m in self.body.named_modules() if isinstance(m, nn.Conv2d)]
        modules = dict(self.body.named_modules())
        shapes: dict[str, tuple[int, ...]] = {}
        hooks = [
            modules[n].register_forward_hook(lambda _m, _i, out, n=n: shapes.__setitem__(n, tuple(out.shape)))
            for n in names
            if n in modules
        ]
        was_training = self.body.training
        device = next(self.body.parameters()).device
        try:
            with torch.no_grad():
                self.body.eval()(torch.zeros(1, self.body_in_channels(), *input_size, device=device))
        finally:
            for hook in hooks:
                hook.remove()
            self.body.train(was_training)
        spatial = [
            n
            for n in names
            if len(shapes.get(n, ())) == 4
            and min(shapes[n][2:]) > 1
            and channels.get(n) in (None, shapes[n][1])  # NCHW; Swin's stages are NHWC: no map from them
        ]
        if not spatial:
            return None
        return f"body.{spatial[-1]}", modules[spatial[-1]]

    def body_in_channels(self) -> int:
        conv = next((m for m in self.body.modules() if isinstance(m, nn.Conv2d)), None)
        return int(conv.in_channels) if conv is not None else 3

    # ----------------------------------------------------------------- forward
    def forget_features(self, *_: Any) -> None:
        if self.cache is not None:
            self.cache.clear()

    def extract(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(1)

    def features(self, x: Tensor) -> Tensor:
        if self.unfrozen:
            return self.extract(x)
        with torch.no_grad():  # feature extraction: no autograd through the body
            if self.cache is not None and (self.cache_training or not self.training):
                return self.cache(x, self.extract)
            return self.extract(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.head_drop(self.features(x)))
