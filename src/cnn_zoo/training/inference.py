"""What `evaluate`, `predict` and `export` share: a classifier from a checkpoint, its data, a trainer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, open_dict

from cnn_zoo.data.base import ZooDataModule
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.torch_files import load_torch_file
from cnn_zoo.training.classifier import Classifier
from cnn_zoo.training.pipeline import build_trainer, instantiate

log = logging.getLogger(__name__)

def load_classifier(ckpt_path: str | Path | None, tta: dict[str, Any] | None = None) -> Classifier:
    """The Classifier saved in `ckpt_path`, on CPU, with the test-time augmentation asked for now."""
    if not ckpt_path:
        raise CnnZooError("ckpt_path is required: ckpt_path=outputs/runs/<run>/checkpoints/<name>.ckpt")
    path, checkpoint = load_torch_file(ckpt_path, "checkpoint", "pass ckpt_path=<run folder>/checkpoints/<name>.ckpt")
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not hparams or "data" not in hparams or "net" not in hparams:
        raise CnnZooError(f"{path} is not a cnn_zoo checkpoint (no network config and data spec inside)")
    model = Classifier.load_from_checkpoint(path, map_location="cpu", weights_only=True, tta=tta)
    model.eval()
    return model


def datamodule_for(spec: DataSpec | dict[str, Any], data_cfg: DictConfig | None) -> ZooDataModule:
    """The data a checkpoint was trained on (its spec), or the one `data_cfg` names, preprocessed as trained.

    With `data_cfg`, what the kind says must follow the checkpoint (an image's size, normalisation and color mode)
    still comes from it: the network only understands inputs prepared the way it was trained.
    """
    spec = spec if isinstance(spec, DataSpec) else DataSpec.from_dict(spec)
    if data_cfg is None:
        config = spec.datamodule
        if not config:
            raise CnnZooError("this checkpoint does not record its data config; name one with data=<option>")
    else:
        config = to_plain(data_cfg)
    config = spec.data_kind.follow_checkpoint(spec, dict(config))
    datamodule = instantiate(config, "data")
    datamodule.prepare_data()
    datamodule.setup("test")
    if datamodule.spec.class_names != spec.class_names:
        raise CnnZooError(
            f"the data's classes {list(datamodule.spec.class_names)} differ from the checkpoint's "
            f"{list(spec.class_names)}; evaluate on data with the same class folders"
        )
    return datamodule


def inference_trainer(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """A trainer from the `trainer` group that saves no checkpoint: evaluate and predict write their own files."""
    with open_dict(cfg):
        cfg.trainer.enable_checkpointing = False
    return build_trainer(cfg, extra_callbacks)
