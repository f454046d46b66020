"""Pretrained backbone weights, offline first: the torch hub cache, a download, or a local file.

- `imagenet_state_dict(arch)`: torchvision's ImageNet weights for `arch`, read from
  `torch.hub.get_dir()/checkpoints/<file named in the weights' URL>` (the place torchvision itself caches them,
  so `TORCH_HOME` moves it); downloaded there when absent and the network answers.
- `load_backbone_weights(backbone, path)`: a state dict from a file (torchvision or timm layout, a whole
  classifier's or just the backbone's, or a Lightning checkpoint's `state_dict`), matched to the backbone's keys;
  the old classifier's keys are ignored, anything else that does not fit is reported in one line.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.torch_files import load_torch_file

log = logging.getLogger(__name__)

# `weights: imagenet` means the classic ImageNet-1k weights (those Keras' applications ship); other members of
# torchvision's Weights enum (e.g. IMAGENET1K_V2 for ResNet50) can be named directly.
IMAGENET_ALIAS = {"imagenet": "IMAGENET1K_V1"}
# top-level names of classifiers in torchvision and timm models: keys under them are not the backbone's
HEAD_NAMES = ("classifier", "fc", "head", "pre_logits", "avgpool", "global_pool", "last_linear")
# prefixes a saved state dict may put before the backbone's own keys (ours, DDP's, common training scripts')
PREFIXES = (
    "", "net.backbone.", "backbone.", "module.", "model.", "module.net.backbone.", "encoder.", "net.body.", "body.",
)


def imagenet_weights(arch: str, weights: str) -> Any:
    """The torchvision Weights enum member that `weights` names for `arch`."""
    member = IMAGENET_ALIAS.get(weights, weights)
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError) as err:
        raise CnnZooError(
            f"torchvision has no pretrained weights for arch={arch!r}: pass model.net.weights_path=<state dict file> "
            "or model.net.weights=null"
        ) from err
    if member not in enum.__members__:
        raise CnnZooError(
            f"model.net.weights={weights!r} is not one of {arch}'s weights: imagenet, {', '.join(enum.__members__)}, "
            "or null"
        )
    return enum[member]


def hub_cache_file(url: str) -> Path:
    """Where `torch.hub.load_state_dict_from_url` keeps the file of `url` (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def download(url: str, destination: Path) -> None:
    """Fetch `url` into `destination`, checking the hash prefix in its name as torch.hub does (tests replace this)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    match = re.search(r"-([a-f0-9]+)\.", destination.name)
    torch.hub.download_url_to_file(url, str(destination), hash_prefix=match.group(1) if match else None)


def imagenet_file(arch: str, weights: str = "imagenet") -> Path:
    """torchvision's pretrained file for `arch`: from the hub cache, else downloaded into it (one line if not)."""
    from cnn_zoo.models.hub import url_file

    member = imagenet_weights(arch, weights)
    return url_file(member.url, f"{arch} weights {member}")


def imagenet_state_dict(arch: str, weights: str = "imagenet") -> dict[str, torch.Tensor]:
    """torchvision's pretrained state dict for `arch`: from the hub cache, else downloaded into it."""
    return read_state_dict(imagenet_file(arch, weights))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict file; a Lightning or training-script checkpoint's `state_dict` is unwrapped."""
    if str(path).endswith(".safetensors"):
        return read_safetensors(path)
    path, content = load_torch_file(path, "weights file", "set model.net.weights_path to a state dict file")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            content = content[key]
            break
    if not isinstance(content, dict) or not any(isinstance(v, torch.Tensor) for v in content.values()):
        raise CnnZooError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return {k: v for k, v in content.items() if isinstance(v, torch.Tensor)}


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` file (the Hugging Face Hub's format), on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(path).expanduser()
    if not file.is_file():
        raise CnnZooError(f"weights file not found: {file}; set model.net.weights_path to a state dict file")
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CnnZooError(f"cannot read weights file {file} as safetensors ({str(err).splitlines()[0]})") from err


def is_head_key(key: str) -> bool:
    return key.split(".")[0] in HEAD_NAMES


def match_keys(state: dict[str, torch.Tensor], expected: set[str]) -> tuple[str, dict[str, torch.Tensor]]:
    """The prefix under which `state` holds the most of the `expected` keys, and those entries renamed."""
    best_prefix, best = "", {}
    for prefix in PREFIXES:
        found = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix) :] in expected}
        if len(found) > len(best):
            best_prefix, best = prefix, found
    return best_prefix, best


def sample(keys: Any, count: int = 3) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:count]) + (f" (+{len(keys) - count} more)" if len(keys) > count else "")


def load_backbone_weights(
    backbone: nn.Module, state: dict[str, torch.Tensor], source: str, head_keys: frozenset[str] = frozenset()
) -> None:
    """Copy the backbone's tensors out of `state`; missing, misshapen or stray keys are reported, not guessed.

    `head_keys`: the keys of the classifier the backbone was cut from (ignored in `state`, as HEAD_NAMES are).
    """
    own = backbone.state_dict()
    expected = {k for k in own if not k.endswith("num_batches_tracked")}
    prefix, found = match_keys(state, set(own))
    if not found:
        raise CnnZooError(
            f"no key of {source} fits the backbone: it holds {sample(state)}; the backbone expects e.g. "
            f"{sample(expected)} (a torchvision/timm model's state dict of the same arch, or a cnn_zoo checkpoint)"
        )
    missing = expected - set(found)
    if missing:
        raise CnnZooError(
            f"{source} lacks {len(missing)} of the backbone's {len(expected)} tensors ({sample(missing)}): "
            "is it a state dict of the same arch (model.net.arch) and source?"
        )
    misshapen = [k for k, v in found.items() if v.shape != own[k].shape]
    if misshapen:
        key = misshapen[0]
        raise CnnZooError(
            f"{source} does not fit the backbone: {len(misshapen)} tensor(s) differ in shape, e.g. {key} is "
            f"{list(found[key].shape)} in the file, {list(own[key].shape)} in the network (another arch or in_chans?)"
        )
    stray = [
        k[len(prefix) :]
        for k in state
        if k.startswith(prefix)
        and k[len(prefix) :] not in own
        and not is_head_key(k[len(prefix) :])
        and k[len(prefix) :] not in head_keys
    ]
    if stray:
        raise CnnZooError(
            f"{source} holds {len(stray)} backbone tensor(s) that the backbone lacks ({sample(stray)}): "
            "a state dict of another arch? Set model.net.arch (and source) to the file's"
        )
    backbone.load_state_dict(found, strict=False)
    log.info(
        "backbone weights loaded from %s (%d tensors%s)", source, len(found), f", prefix {prefix!r}" * bool(prefix)
    )
