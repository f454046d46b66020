"""Callbacks that a config entry switches on: factories returning None while the entry is off.

A config group entry is always instantiated (`conf/callbacks/default.yaml` lists it), so the switch is a value in
it (`callbacks.ema.decay=0.999`, `callbacks.accumulate_schedule.scheduling={0:1,4:2}`); `build_trainer` drops the
None of an entry left off.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from cnn_zoo.runtime.errors import CnnZooError


class AveragedWeights(EMAWeightAveraging):
    """`EMAWeightAveraging` whose checkpoint loading outside `fit` leaves the model with the checkpoint's weights.

    Lightning's callback keeps its averaged model after `fit`; a `trainer.test(ckpt_path=best)` then calls its
    `on_load_checkpoint`, which loads the raw `current_model_state` over the averaged `state_dict` Lightning has
    just loaded: the test after fitting would measure the raw weights, not those the best checkpoint was chosen by.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    # Before its first update (`update_starting_at_step`) Lightning's average is the copy of the initial weights
    # made at setup: it would validate them (chance accuracy), save them as the checkpoints' weights and, for a run
    # that ends before the average starts, copy them over the trained model. Until then the model is its own average.
    def _averaging(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaging():
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaging():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaging():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._average_model is not None and not self._averaging():
            checkpoint["state_dict"] = checkpoint["current_model_state"]


def ema(
    decay: float | None = None, update_starting_at_step: int | None = None, update_every_n_steps: int = 1
) -> L.Callback | None:
    """Lightning's `EMAWeightAveraging` (torch's `AveragedModel`, parameters and BatchNorm statistics).

    Validation sees the averaged weights, the checkpoints hold them as their `state_dict` (the raw weights beside,
    as `current_model_state`, for resuming), and training ends with them in the model: so the best checkpoint,
    the test after fitting, `evaluate`, `predict` and `export` all use the average.
    """
    if decay is None:
        return None
    if not isinstance(decay, int | float) or isinstance(decay, bool) or not 0.0 < float(decay) < 1.0:
        raise CnnZooError(f"callbacks.ema.decay must be in (0, 1) (null: off), got {decay!r}")
    return AveragedWeights(
        decay=float(decay), update_starting_at_step=update_starting_at_step, update_every_n_steps=update_every_n_steps
    )


def gradient_accumulation(scheduling: dict[Any, Any] | None = None) -> L.Callback | None:
    """Lightning's `GradientAccumulationScheduler`: {epoch: batches per optimizer step}, e.g. {0: 1, 4: 2}."""
    if not scheduling:
        return None
    from lightning.pytorch.callbacks import GradientAccumulationScheduler

    try:
        plan = {int(epoch): int(factor) for epoch, factor in dict(scheduling).items()}
    except (TypeError, ValueError) as err:
        raise CnnZooError(
            f"callbacks.accumulate_schedule.scheduling must map epochs to batch counts, e.g. {{0: 1, 4: 2}}; "
            f"got {scheduling!r}"
        ) from err
    if any(epoch < 0 for epoch in plan) or any(factor < 1 for factor in plan.values()):
        raise CnnZooError(f"callbacks.accumulate_schedule.scheduling needs epochs >= 0 and counts >= 1, got {plan}")
    return GradientAccumulationScheduler(plan)
