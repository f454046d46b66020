"""Epochs counted from 1 wherever a person reads them, as Keras prints them: the progress bar and checkpoint names.

Lightning counts `trainer.current_epoch` from 0; the epoch log line (`epoch 1/10 ...`) counts from 1, and a bar
saying `Epoch 0/9` beside it, or a best checkpoint `epoch_000.ckpt` for the first epoch, reads as off by one.
Only what is shown changes: checkpoints still store Lightning's own `epoch` counter, so resuming is unaffected.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from cnn_zoo.runtime.lightning_compat import EpochLabelledProgressBar


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint whose `{epoch}` in `filename` is the epoch counted from 1."""

    def format_checkpoint_name(self, metrics: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": int(metrics["epoch"]) + 1}
        return super().format_checkpoint_name(metrics, *args, **kwargs)


class EpochProgressBar(EpochLabelledProgressBar):
    """Rich's progress bar showing `Epoch 1/10` for the first of ten epochs (Lightning shows `Epoch 0/9`)."""

    def epoch_label(self, current_epoch: int, lightning_label: str) -> str:
        label = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            label += f"/{self.trainer.max_epochs}"
        return f"{label:{len(lightning_label)}}"  # Lightning pads its label to the validation bar's
