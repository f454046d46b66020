"""Callbacks of our own, each a thin layer over Lightning's."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichModelSummary

from cnn_zoo import startup_gc


class NetworkSummary(RichModelSummary):
    """Keras-style `model.summary()`: the network's layers with output shapes and trainable/frozen counts.

    Lightning's summary also lists the metric modules; they hold no parameters and hide the network.
    """

    def _summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        summary = super()._summary(trainer, pl_module)
        summary._layer_summary = {
            name: layer for name, layer in summary._layer_summary.items() if name.split(".")[0] == "net"
        }
        return summary


class ResumeCollection(L.Callback):
    """Ends a command's start-up pause of the garbage collector (`cnn_zoo.startup_gc`) when a loop starts:
    training after its sanity check, validation, test or prediction."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        startup_gc.resume()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            startup_gc.resume()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        startup_gc.resume()

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        startup_gc.resume()
