"""Per-batch callback hooks that do nothing, taken out of Lightning's dispatch.

Lightning calls every hook of every callback at every batch, six of them a training step, whether a callback
implements the hook or not: each call goes through a profiler context and builds the callback's `state_key`
string, 10.6 us for one hook over the 13 callbacks of an MNIST run (0.8 us each), 64 us a step. A monitoring
`ModelCheckpoint` with neither `every_n_train_steps` nor `train_time_interval` checks the trainer's state for
36 us a step to find every time that there is nothing to save. Lightning's dispatch skips an attribute that is
not callable, so a hook set to None on the instance is never called (`cnn_zoo.runtime.lightning_compat.remove_hook`):
the same run, less bookkeeping. Only per-batch hooks are touched; epoch and checkpoint hooks run as always.
"""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from cnn_zoo.runtime.lightning_compat import remove_hook, saves_at_train_steps

BATCH_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)


def idle_batch_hooks(callback: L.Callback) -> list[str]:
    """The per-batch hooks `callback` leaves as Lightning's no-op, or that cannot do anything in this run."""
    kind = type(callback)
    idle = [
        hook
        for hook in BATCH_HOOKS
        if hook not in vars(callback) and getattr(kind, hook) is getattr(L.Callback, hook)
    ]
    if never_saves_at_a_step(callback):
        idle.append("on_train_batch_end")
    return idle


def never_saves_at_a_step(callback: L.Callback) -> bool:
    """A Lightning `ModelCheckpoint` (its own `on_train_batch_end`) that saves only at epochs and validations."""
    return (
        isinstance(callback, ModelCheckpoint)
        and "on_train_batch_end" not in vars(callback)
        and type(callback).on_train_batch_end is ModelCheckpoint.on_train_batch_end
        and not saves_at_train_steps(callback)
    )


def skip_idle_batch_hooks(callbacks: Iterable[L.Callback]) -> None:
    """Set each callback's idle per-batch hooks to None, which Lightning's dispatch skips."""
    for callback in callbacks:
        for hook in idle_batch_hooks(callback):
            remove_hook(callback, hook)
