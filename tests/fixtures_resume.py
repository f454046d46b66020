"""A run that SIGKILLs itself at a chosen training step: a deterministic stand-in for a kill from outside."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L

KILL_AT_STEP = "CNN_ZOO_TEST_KILL_AT_STEP"  # only the run to be interrupted sets it; the config stays the same


class SelfKill(L.Callback):
    """SIGKILL (no cleanup, no checkpoint) before training step `$CNN_ZOO_TEST_KILL_AT_STEP`, on every rank."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        at = os.environ.get(KILL_AT_STEP)
        if at is not None and trainer.global_step == int(at):
            os.kill(os.getpid(), signal.SIGKILL)
