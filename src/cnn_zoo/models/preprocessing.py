"""Preprocessing follows the weights: the data config takes the size, interpolation, crop and mean/std that a
pretrained backbone expects, and missing weights are found before any image is read.

A network class may declare two static functions of its `model.net` config:
- `weights_file(config) -> Path | None`: the pretrained file it will load, located (or downloaded) now;
- `weights_preprocessing(config) -> dict | None`: what those weights expect (`image_size`, `interpolation`,
  `crop_pct`, `mean`, `std`, and `origin`, the words saying where it comes from): timm's `resolve_data_config`,
  torchvision's `weights.transforms()`.

The model config's `data_defaults` says which data keys follow the weights (conf/data/catsdogs.yaml reads them:
`image_size: ${oc.select:model.data_defaults.image_size,180}`). A value `weights` is replaced by the weights' own;
a value the user set that differs from the weights' is kept, with one warning saying what it costs.
`prepare_data_config(cfg)` does both before the datamodule is built (`cnn_zoo.training.pipeline.build_datamodule`), so
the resolved values are what the checkpoint's data spec records and evaluate, predict, export and explain use.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, open_dict

from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)

FOLLOWED = ("image_size", "normalization", "interpolation", "crop_pct")
COSTS = {
    "normalization": "inputs scaled unlike the images the weights learned from: usually lower accuracy",
    "image_size": "features at another scale than pretraining: usually some accuracy (smaller: faster)",
    "interpolation": "slightly different pixels than pretraining: a small accuracy change",
    "crop_pct": "another framing than pretraining (null: whole image squashed, as Keras): a small accuracy change",
}


def network_class(net: dict[str, Any]) -> Any:
    import hydra.utils

    try:
        return hydra.utils.get_object(str(net.get("_target_")))
    except Exception:  # build_net reports a bad _target_ in its own words
        return None


def expected_value(key: str, weights: dict[str, Any]) -> Any:
    return "weights" if key == "normalization" else weights[key]


def stats_of(value: Any, data: DictConfig, channels: int) -> tuple[list[float], list[float]] | None:
    """The mean/std a data normalization setting gives (None for a name this module does not know)."""
    from cnn_zoo.data.transforms import NORMALIZATIONS, normalization_stats

    if value == "weights":
        return list(data.get("mean") or []), list(data.get("std") or [])
    if value in NORMALIZATIONS:
        return normalization_stats(str(value), channels)
    return None


def differs(key: str, value: Any, weights: dict[str, Any], data: DictConfig) -> bool:
    if key == "normalization":
        stats = stats_of(value, data, len(weights["mean"]))
        if stats is None:
            return True
        ours, theirs = stats[0] + stats[1], weights["mean"] + weights["std"]
        return len(ours) != len(theirs) or any(abs(a - b) > 1e-4 for a, b in zip(ours, theirs, strict=True))
    if key == "image_size":
        from cnn_zoo.data.transforms import image_size_pair

        return image_size_pair(value) != list(weights["image_size"])
    if key == "crop_pct":
        return (value is None) != (weights[key] is None) or (
            value is not None and abs(float(value) - float(weights[key])) > 1e-3
        )
    return str(value) != str(weights[key])


def describe(weights: dict[str, Any]) -> str:
    size = "x".join(str(v) for v in weights["image_size"])
    mean = ", ".join(f"{v:.3f}" for v in weights["mean"])
    std = ", ".join(f"{v:.3f}" for v in weights["std"])
    return f"{size}, {weights['interpolation']}, crop {weights['crop_pct']}, mean [{mean}], std [{std}]"


def prepare_data_config(cfg: DictConfig) -> dict[str, Any] | None:
    """Locate the weights, then set `cfg.data`'s followed keys from them (see the module docstring).

    Returns what the weights expect (None for a network without pretrained weights).
    """
    model = cfg.get("model")
    if model is None or model.get("net") is None or cfg.get("data") is None:
        return None
    net = to_plain(model.net)
    cls = network_class(net)
    if cls is None:
        return None
    locate = getattr(cls, "weights_file", None)
    if locate is not None and net.get("load_weights", True):
        locate(net)  # one line naming what to place where, before any image is decoded
    expects = getattr(cls, "weights_preprocessing", None)
    weights = expects(net) if expects is not None else None
    follows = [k for k in FOLLOWED if k in (to_plain(model.get("data_defaults")) or {})]
    data = cfg.data
    present = [k for k in FOLLOWED if k in data]
    placeholders = [k for k in present if data.get(k) == "weights"]
    if weights is None:
        if placeholders:
            raise CnnZooError(
                f"data.{placeholders[0]}=weights takes it from pretrained weights, and {net.get('_target_')} "
                "has none here (model.net.weights=null?): set data." + placeholders[0] + " explicitly"
            )
        return None
    explicit = [k for k in follows if k in present and data.get(k) != "weights" and differs(k, data[k], weights, data)]
    with open_dict(data):
        for key in placeholders:
            data[key] = expected_value(key, weights)
            if key == "normalization":
                data["mean"], data["std"] = list(weights["mean"]), list(weights["std"])
    if explicit:
        settings = ", ".join(f"data.{k}={to_plain(data[k])}" for k in explicit)
        costs = "; ".join(f"{k}: {COSTS[k]}" for k in explicit)
        log.warning(
            "%s kept, though the %s weights expect %s (from %s). Cost: %s",
            settings,
            net.get("name") or net.get("arch"),
            describe(weights),
            weights.get("origin"),
            costs,
        )
    elif follows:
        log.info("data preprocessing from the weights (%s): %s", weights.get("origin"), describe(weights))
    return weights
