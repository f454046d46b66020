"""The pieces every entry point shares: datamodule, classifier, trainer, metrics file."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import hydra.utils
import lightning as L
from hydra.errors import InstantiationException
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig

from cnn_zoo.callbacks.model_summary import ResumeCollection
from cnn_zoo.data.base import ZooDataModule
from cnn_zoo.data.skipped import SkippedImages
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.hook_dispatch import skip_idle_batch_hooks
from cnn_zoo.runtime.profiling import NoProfiler
from cnn_zoo.search.trial_pruning import pruning_callbacks
from cnn_zoo.tracking.loggers import prepare_loggers
from cnn_zoo.training.classifier import Classifier
from cnn_zoo.training.mixing import mixing_config
from cnn_zoo.training.options import check_data_options

log = logging.getLogger(__name__)


def instantiate(config: Any, what: str, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, with a user's bad value reported as one line naming the config group."""
    try:
        return hydra.utils.instantiate(config, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, CnnZooError):
            raise cause from None
        raise CnnZooError(f"bad {what} config: {cause or err}") from err


def build_datamodule(cfg: DictConfig) -> ZooDataModule:
    from cnn_zoo.models.preprocessing import prepare_data_config

    prepare_data_config(cfg)  # the weights located and their preprocessing taken before any image is read
    datamodule = instantiate(cfg.data, "data")
    datamodule.prepare_data()
    datamodule.setup("fit")
    if datamodule.spec is None:
        raise RuntimeError(f"{type(datamodule).__name__}.setup() must set `spec` (a cnn_zoo.data.spec.DataSpec)")
    check_data_options(to_plain(cfg.get("augmentation")), datamodule.spec)
    # the resolved data config travels with the spec, so `evaluate` can rebuild the test data from a checkpoint
    if datamodule.spec.datamodule is None:
        datamodule.spec = datamodule.spec.with_datamodule(to_plain(cfg.data))
    log.info("classes: %s", dict(enumerate(datamodule.spec.class_names)))
    return datamodule


def build_classifier(cfg: DictConfig, data: DataSpec) -> Classifier:
    """The Classifier for `data` (`datamodule.spec`); checkpoints rebuild theirs from the stored dict."""
    return Classifier(
        net=to_plain(cfg.model.net),
        data=data,
        optimizer=to_plain(cfg.optimizer),
        scheduler=to_plain(cfg.get("scheduler")) or None,
        tta=to_plain(cfg.get("tta")) or None,
        class_weights=to_plain(cfg.model.get("class_weights")),
        channels_last=bool(cfg.model.get("channels_last", False)),
        label_smoothing=float((cfg.model.get("loss") or {}).get("label_smoothing") or 0.0),
        mixing=mixing_config(to_plain(cfg.get("augmentation"))),
    )


def build_trainer(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    callbacks = [instantiate(c, "callbacks") for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks = [c for c in callbacks if c is not None]  # a switch left off (cnn_zoo.callbacks.optional)
    callbacks += [*extra_callbacks, *pruning_callbacks(cfg), ResumeCollection(), SkippedImages()]  # not config choices
    loggers = prepare_loggers([instantiate(c, "logger") for c in (cfg.get("logger") or {}).values() if c], cfg)
    if not loggers:  # Lightning's LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    profiler = {} if cfg.trainer.get("profiler") else {"profiler": NoProfiler()}  # none asked: none paid for
    trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False, **profiler)
    skip_idle_batch_hooks(trainer.callbacks)  # with the progress bar and summary Lightning adds
    return trainer


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Flat `stage/metric` floats, sorted, for metrics.json: each value once.

    Lightning's `callback_metrics` holds the classifier's epoch values twice (`train/acc` and the logger's
    `train/acc_epoch`), step values and LearningRateMonitor's `lr-<optimizer>`; the learning rate stays a curve
    in TensorBoard, the rest is kept under its plain name."""
    out = {}
    for key, value in metrics.items():
        if key.startswith("lr-") or key.endswith("_step") or (key.endswith("_epoch") and key[:-6] in metrics):
            continue
        number = float(value.item() if hasattr(value, "item") else value)
        if not math.isnan(number):
            out[key] = number
    return dict(sorted(out.items()))
