"""The one seam between cnn_zoo and Lightning's private API: every private attribute or method is reached here.

Lightning keeps no promise about names that start with `_`; a minor release may rename one, and the user's run
would then fail with an `AttributeError` deep inside a training loop. Each use below says why the project needs
it and which public API would replace it. `tests/test_lightning_compat.py` checks every one against the
installed Lightning by name, and `pyproject.toml` caps `lightning` below the first minor release not tested:
an upgrade fails that test, not a run. To raise the cap: upgrade, run that test, adapt what it names here.

Tested with: lightning 2.6 (`TESTED_LIGHTNING`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar
from lightning.pytorch.callbacks.spike import SpikeDetection
from lightning.pytorch.strategies import DDPStrategy

# why: Lightning has no public launcher that re-runs a command line. Public replacement: none (a launcher
# plugin API); `ddp_spawn` would avoid the launcher but pickles the trainer.
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

TESTED_LIGHTNING = "2.6"  # the minor release tests/test_lightning_compat.py was last run against

# ----------------------------------------------------------------------------------------------- DDP (distributed.py)
SubprocessScriptLauncher = _SubprocessScriptLauncher


class ScriptLauncher(_SubprocessScriptLauncher):
    """Lightning's script launcher (rank zero re-runs the command line for ranks 1..N-1) with public names.

    `launch()` calls `_call_children_scripts()` on rank zero, which checks that no child runs yet and fills
    `self.procs`: a subclass overrides `start_children` and may call `check_can_spawn_children`.
    """

    def _call_children_scripts(self) -> None:  # the name Lightning's `launch()` calls
        self.start_children()

    def start_children(self) -> None:
        """Start ranks 1..N-1 (`self.procs`); by default as Lightning does (the same command line)."""
        super()._call_children_scripts()

    def check_can_spawn_children(self) -> None:
        """Lightning's refusal to start children twice, or from a process that is itself a child."""
        self._check_can_spawn_children()


class LauncherChoosingDDPStrategy(DDPStrategy):
    """`DDPStrategy` that may swap the launcher Lightning picks (`choose_launcher`).

    why: `_configure_launcher` is where `DDPStrategy` builds its `_SubprocessScriptLauncher` and keeps it in
    `_launcher`; a strategy has no public way to pass a launcher. Public replacement: none in 2.6.
    """

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        self._launcher = self.choose_launcher(self._launcher)

    def choose_launcher(self, launcher: Any) -> Any:
        """The launcher to use instead of Lightning's `launcher` (by default, Lightning's)."""
        return launcher


def ddp_find_unused_parameters(strategy: Any) -> bool:
    """Whether a DDP strategy was given `find_unused_parameters=True` (False for any other strategy).

    why: the keyword arguments for `DistributedDataParallel` are kept in the private `_ddp_kwargs`, read before the
    strategy wraps the model (transfer nets check that frozen epochs can run under DDP). Public replacement: none.
    """
    return bool((getattr(strategy, "_ddp_kwargs", None) or {}).get("find_unused_parameters", False))


# ------------------------------------------------------------------------------------------- summary (callbacks.py)
class FilteredModelSummary(RichModelSummary):
    """Lightning's rich model summary listing only the layers for which `keep_layer(name)` is true.

    why: the summary's rows come from `_summary()` (a `ModelSummary`) whose `_layer_summary` dict holds one entry
    per module; there is no public filter. Public replacement: `ModelSummary(max_depth=...)` alone cannot hide the
    metric modules (they sit at depth 1 beside the network).
    """

    def _summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        summary = super()._summary(trainer, pl_module)
        layers = summary._layer_summary
        summary._layer_summary = {name: layer for name, layer in layers.items() if self.keep_layer(name)}
        return summary

    def keep_layer(self, name: str) -> bool:
        """Whether the module named `name` (as `named_modules()` names it) is a row of the summary."""
        return True


# ------------------------------------------------------------------------------------ checkpoints (checkpointing.py)
def checkpoint_state_key(callback: L.Callback, **kwargs: Any) -> str:
    """`<class name>{kwargs!r}`: the key a callback's state is stored under in a checkpoint.

    why: `Callback._generate_state_key` is how Lightning's own `ModelCheckpoint` builds its key; checkpoints of
    `LatestCheckpoint` hold `LatestCheckpoint{'latest': True}`, and must keep loading. Public replacement: a
    `state_key` property returning the same string by hand.
    """
    return callback._generate_state_key(**kwargs)


def save_checkpoint_now(callback: ModelCheckpoint, trainer: L.Trainer, filepath: str) -> None:
    """Save `filepath` as `callback` does: `trainer.save_checkpoint`, its last-saved step, the loggers told.

    why: `ModelCheckpoint._save_checkpoint` records `_last_global_step_saved` (so the same step is not saved twice)
    and notifies loggers (`after_save_checkpoint`). Public replacement: `trainer.save_checkpoint(filepath)` plus
    those two by hand.
    """
    callback._save_checkpoint(trainer, filepath)


# ------------------------------------------------------------------------------- hook dispatch (hook_dispatch.py)
def saves_at_train_steps(callback: ModelCheckpoint) -> bool:
    """Whether a `ModelCheckpoint` may save inside an epoch (`every_n_train_steps >= 1` or `train_time_interval`).

    why: the constructor's arguments are stored as `_every_n_train_steps`/`_train_time_interval` only. Public
    replacement: none (a `ModelCheckpoint` property for its triggers).
    """
    return callback._every_n_train_steps >= 1 or callback._train_time_interval is not None


def remove_hook(callback: L.Callback, hook: str) -> None:
    """Take `callback.<hook>` out of Lightning's dispatch for this instance.

    why: `lightning.pytorch.trainer.call._call_callback_hooks` calls `getattr(callback, hook)` only when it is
    callable, so None on the instance skips the call and its profiler context (0.8 us a hook and callback).
    Public replacement: none (Lightning calls every hook of every callback).
    """
    setattr(callback, hook, None)


# ----------------------------------------------------------------------------------- the module (classifier.py)
# why: Lightning records the hook being run in `LightningModule._current_fx_name`, set about 47 times a training
# step; `nn.Module.__setattr__` makes each set cost 2.9 us, so the Classifier sets it directly. Public replacement:
# none (`self.log` reads it to know where it was called from).
HOOK_NAME_ATTRIBUTE = "_current_fx_name"


# ------------------------------------------------------------------------------------------- loops (resume.py)
def batches_processed_in_epoch(trainer: L.Trainer) -> int:
    """Training batches of the current epoch already processed (during `on_train_batch_end`, the current one too).

    why: the count lives in the fit loop's progress tracker, `fit_loop.epoch_loop.batch_progress` (no underscore,
    but the loops' structure is internal and changed in 2.0). Public replacement: none (`trainer.fit_loop` is
    public, its epoch loop's counters are not documented).
    """
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


# ------------------------------------------------------------------------------------ progress bar (epoch_numbers.py)
class EpochLabelledProgressBar(RichProgressBar):
    """Rich's bar whose training label a subclass chooses (`epoch_label`).

    why: `_get_train_description` is the only place the bar's `Epoch 0/9` is made, and it counts from 0.
    Public replacement: none in 2.6 (`RichProgressBarTheme` styles the label, it cannot change its text).
    """

    def _get_train_description(self, current_epoch: int) -> str:
        return self.epoch_label(current_epoch, super()._get_train_description(current_epoch))

    def epoch_label(self, current_epoch: int, lightning_label: str) -> str:
        return lightning_label


# ------------------------------------------------------------------------------------ LR finder (switches.py)
@contextmanager
def lr_finder_without_bar() -> Iterator[None]:
    """Lightning's range test without its tqdm bar, which would redraw "Finding best initial lr" a hundred times
    into a log file: for runs whose progress bars are off (`runtime.progress.bars_enabled`).

    why: `_LRCallback` opens `tqdm(...)` itself (`progress_bar_refresh_rate=1`, from the module's global `tqdm`)
    and `Tuner.lr_find` passes no option for it. Public replacement: none in 2.6.
    """
    from lightning.pytorch.tuner import lr_finder

    original = lr_finder.tqdm
    lr_finder.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        lr_finder.tqdm = original


# ------------------------------------------------------------------------------- divergence and signals (faults)
class SpikeDetectionHooks(SpikeDetection):
    """Lightning's `SpikeDetection` with its three decisions under public names a subclass overrides.

    why: what is a spike (`_is_spike`), what the running statistics learn (`_update_stats`) and what happens on a
    spike (`_handle_spike`, which raises by default) are private methods its `on_train_batch_end` calls.
    Public replacement: none in 2.6 (only `exclude_batches_path` and the constructor's tolerances are public).
    """

    def _is_spike(self, loss: Any) -> bool:
        return self.is_spike(loss)

    def is_spike(self, loss: Any) -> bool:
        return super()._is_spike(loss)

    def _update_stats(self, val: Any) -> None:
        self.update_stats(val)

    def update_stats(self, val: Any) -> None:
        super()._update_stats(val)

    def _handle_spike(self, trainer: L.Trainer, batch_idx: int) -> None:
        self.handle_spike(trainer, batch_idx)

    def handle_spike(self, trainer: L.Trainer, batch_idx: int) -> None:
        super()._handle_spike(trainer, batch_idx)


def cluster_environment(trainer: L.Trainer) -> Any:
    """The cluster environment the trainer detected (SLURM's, with its `auto_requeue` and `requeue_signal`).

    why: only the accelerator connector keeps it for every strategy (`trainer.strategy.cluster_environment`
    exists on parallel strategies only). Public replacement: none in 2.6.
    """
    return trainer._accelerator_connector.cluster_environment
