"""Callbacks of our own, each a thin layer over Lightning's."""

from __future__ import annotations

import lightning as L

from cnn_zoo.runtime import startup_gc
from cnn_zoo.runtime.lightning_compat import FilteredModelSummary


class NetworkSummary(FilteredModelSummary):
    """Keras-style `model.summary()`: the network's layers with output shapes and trainable/frozen counts.

    Lightning's summary also lists the metric modules; they hold no parameters and hide the network.
    """

    def keep_layer(self, name: str) -> bool:
        return name.split(".")[0] == "net"


class ResumeCollection(L.Callback):
    """Ends a command's start-up pause of the garbage collector (`cnn_zoo.runtime.startup_gc`) when a loop starts:
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
