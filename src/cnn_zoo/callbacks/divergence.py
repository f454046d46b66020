"""Divergence: a non-finite (or, optionally, spiking) training loss stops the run at once, with exit status 3.

Without it a run whose loss turned `nan` (`optimizer=sgd optimizer.lr=1e6`) trains on to the end with exit 0, a
`metrics.json` and a "best" checkpoint, and EarlyStopping's `check_finite` never fires because the monitored
`val/acc` stays finite (at chance). `Divergence` (`conf/callbacks/divergence.yaml`; `callbacks.divergence=null`
turns it off) is Lightning's `SpikeDetection` with three changes:

- a non-finite loss counts from the first step (Lightning's skips its warm-up batches, counted per epoch);
- a spike (a loss `spike_factor` times the running mean of the last `window` steps, after `warmup` steps) only
  counts when `spike_factor` is set (null: non-finite losses only), and no `skip_batches.json` is written;
- what it raises is `Diverged`, one line naming the epoch (from 1), the step, the loss, the learning rate and
  the fixes, and the last checkpoint saved before it (`cnn_zoo.runtime.faults` writes `"status": "diverged"`).

A non-finite validation loss stops the run as well, and no checkpoint with non-finite weights is ever written:
the weights are checked as each checkpoint is assembled, so `last.ckpt` stays the last finite state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from cnn_zoo.runtime.errors import EXIT_DIVERGED, CnnZooError
from cnn_zoo.runtime.lightning_compat import SpikeDetectionHooks


class Diverged(CnnZooError):
    """Training diverged: the message says where, with which loss and learning rate, and what to change."""

    exit_status = EXIT_DIVERGED

    def __init__(self, message: str, metrics: dict[str, float] | None = None, write_to: str | None = None) -> None:
        super().__init__(message)
        self.metrics = dict(metrics or {})
        self.write_to = write_to  # the run folder where rank zero records the outcome (None on other ranks)


def short_number(value: float) -> str:
    """`1e6`, `0.001`, `3e-5`: a learning rate as a user would type it."""
    text = f"{value:g}"
    mantissa, sep, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if sep else text


def position(trainer: L.Trainer) -> str:
    """`epoch 2, step 37`: the epoch counted from 1, the optimizer steps taken so far."""
    return f"epoch {trainer.current_epoch + 1}, step {trainer.global_step}"


def learning_rate(trainer: L.Trainer) -> float | None:
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            return float(group["lr"])
    return None


def last_saved_checkpoint(trainer: L.Trainer) -> str:
    """'<path> (epoch E, step S)' of the newest checkpoint on disk (all of them finite), or why there is none."""
    saved = []
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint):
            saved += [p for p in (callback.last_model_path, callback.best_model_path) if p and Path(p).is_file()]
    if not saved:
        return "no checkpoint was saved before it (start again)"
    newest = max(saved, key=lambda p: Path(p).stat().st_mtime_ns)
    content = torch.load(newest, map_location="cpu", weights_only=True, mmap=True)
    return f"the last finite checkpoint is {newest} (epoch {content['epoch'] + 1}, step {content['global_step']})"


def scalar_values(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v.item() if hasattr(v, "item") else v) for k, v in sorted(metrics.items())}


class Divergence(SpikeDetectionHooks):
    """Stops training at a non-finite loss (or a spike past `spike_factor` x the running mean), in one line."""

    def __init__(self, spike_factor: float | None = None, window: int = 10, warmup: int = 10) -> None:
        if spike_factor is not None and float(spike_factor) <= 1:
            raise CnnZooError(f"callbacks.divergence.spike_factor must be > 1 (or null), got {spike_factor}")
        if int(window) < 1 or int(warmup) < 0:
            raise CnnZooError(f"callbacks.divergence: window must be >= 1 and warmup >= 0, got {window}, {warmup}")
        rtol = float(spike_factor) - 1 if spike_factor is not None else None
        super().__init__(mode="min", window=int(window), warmup=0, atol=None, rtol=rtol, finite_only=True)
        self.running_mean.persistent(True)  # the window travels in checkpoints (plain tensors)
        self.spike_factor = float(spike_factor) if spike_factor is not None else None
        self.spike_warmup = int(warmup)
        self.steps_seen = 0
        self.loss: torch.Tensor | None = None

    def on_train_batch_end(  # type: ignore[override]
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if outputs is None:  # a training_step that skipped its batch
            return
        if self.spike_factor is not None or trainer.world_size > 1:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        # one process, non-finite losses only: 1 us a step instead of Lightning's 24 (its rank reductions)
        loss = (outputs if isinstance(outputs, torch.Tensor) else outputs["loss"]).detach()
        if math.isfinite(loss.item()) if loss.numel() == 1 else bool(torch.isfinite(loss).all()):
            self.steps_seen += 1
            return
        self.loss = loss
        self.handle_spike(trainer, batch_idx)

    def is_spike(self, loss: torch.Tensor) -> bool:
        self.loss = loss
        if not bool(torch.isfinite(loss).all()):
            return True
        if self.spike_factor is None or self.steps_seen < self.spike_warmup:
            return False
        return super().is_spike(loss)

    def update_stats(self, val: torch.Tensor) -> None:
        self.steps_seen += 1
        if self.spike_factor is not None:  # without spikes to detect, no running mean to keep
            super().update_stats(val)

    def handle_spike(self, trainer: L.Trainer, batch_idx: int) -> None:
        value = float(self.loss) if self.loss is not None else math.nan
        if math.isfinite(value):
            what = f"loss {value:.4g} is over {self.spike_factor:g}x its running mean of the last steps"
        else:
            what = f"loss is {value}"
        self.stop(trainer, f"training diverged at {position(trainer)}: {what}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None or bool(torch.isfinite(loss).all()):
            return
        self.stop(trainer, f"training diverged at {position(trainer)}: the validation loss is {float(loss)}")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        bad = next((name for name, p in pl_module.named_parameters() if not bool(torch.isfinite(p).all())), None)
        if bad is not None:
            self.stop(trainer, f"training diverged at {position(trainer)}: the weights hold non-finite values ({bad})")

    def stop(self, trainer: L.Trainer, what: str) -> None:
        lr = learning_rate(trainer)
        fixes = f"lower optimizer.lr{f' (now {short_number(lr)})' if lr is not None else ''}"
        fixes += ", or set trainer.gradient_clip_val=1.0"
        if str(trainer.precision).startswith("16"):
            fixes += ", or trainer.precision=bf16-mixed (float16 overflows)"
        message = f"{what}; {fixes}; {last_saved_checkpoint(trainer)}"
        run_dir = trainer.default_root_dir if trainer.is_global_zero else None
        if trainer.world_size > 1:
            from cnn_zoo.runtime.faults import ranks_will_stop

            ranks_will_stop()
        raise Diverged(message, scalar_values(trainer.callback_metrics), run_dir)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps_seen": self.steps_seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning's own restores `self.running`, which does not exist; the same keys, restored where they belong
        state = dict(state_dict)
        self.steps_seen = int(state.pop("steps_seen", 0))
        self.last_val = state.pop("last_val")
        self.bad_batches = list(state.pop("bad_batches"))
        self.running_mean.load_state_dict(state.pop("running"), strict=False)
        self.running_mean.base_metric.load_state_dict(state.pop("mean"), strict=False)
