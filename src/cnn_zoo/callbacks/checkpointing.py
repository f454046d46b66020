"""Checkpoint files: `last.ckpt` always the newest state, written atomically, checked before a run resumes from it.

`LatestCheckpoint` (`conf/callbacks/last_checkpoint.yaml`) writes `last.ckpt` at the end of every epoch and,
optionally, every N training steps. Lightning's own `save_last` only refreshes it when a top-k checkpoint is saved,
so after epochs that did not improve the monitored metric it lags behind, and a resumed run would redo them. The
monitoring callback has `save_last: false`: with it on, every improving epoch wrote `last.ckpt` twice (a 15 MB
IMDB model 20-40 ms each, a fine-tuned VGG16 0.5 GB each). `ckpt_path=last` finds the file by its name either way.

`AtomicCheckpointIO` (a Lightning CheckpointIO plugin, `conf/trainer/default.yaml`) writes each checkpoint to a
temporary file in the same folder, fsyncs it and renames it over the target: a process killed during a save
leaves the previous `last.ckpt` whole, never a truncated newest checkpoint.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cnn_zoo.cli.run_folder import slurm_requeued
from cnn_zoo.runtime.atomic import write_atomic
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.lightning_compat import checkpoint_state_key, save_checkpoint_now
from cnn_zoo.runtime.torch_files import load_torch_file

# what a checkpoint written by `cnn_zoo.train` holds beside the weights: enough to continue training
TRAINING_KEYS = ("state_dict", "hyper_parameters", "optimizer_states", "loops", "epoch", "global_step")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with atomic local writes (remote paths keep Lightning's own writer)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        try:
            write_atomic(path, functools.partial(torch.save, checkpoint))
        except (OSError, RuntimeError) as err:  # torch's zip writer wraps the OSError in a RuntimeError
            from cnn_zoo.runtime.faults import DiskFull, full_disk_error, tensor_bytes

            if full_disk_error(err) is None:
                raise
            raise DiskFull(path, tensor_bytes(checkpoint), err) from err


class LatestCheckpoint(ModelCheckpoint):
    """`<dirpath>/last.ckpt` after every epoch (validation included) and every `every_n_train_steps` steps (0: off).

    A `ModelCheckpoint`, so Lightning runs it after the other callbacks (their state is current when it saves) and
    `ckpt_path=last` finds it; the best checkpoint stays the job of the monitoring `ModelCheckpoint`.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 0) -> None:
        if int(every_n_train_steps) < 0:
            raise CnnZooError(f"callbacks.last_checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=False, every_n_epochs=0, every_n_train_steps=0)
        self.every_steps = int(every_n_train_steps)

    @property
    def state_key(self) -> str:
        return checkpoint_state_key(self, latest=True)

    def save_latest(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        self.last_model_path = str(Path(self.dirpath or ".") / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        save_checkpoint_now(self, trainer, self.last_model_path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        # with gradient accumulation the step count stays for the batches of a window: save once, right after the
        # optimizer step (a checkpoint inside the window would lose the gradients accumulated so far)
        step = trainer.global_step
        if self.every_steps and step % self.every_steps == 0 and step != self._last_global_step_saved:
            self.save_latest(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save_latest(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Nothing: the epoch's checkpoint is written once the epoch (and its validation) has ended."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Nothing: the last epoch's end already wrote it."""


def training_checkpoint(path: str | Path) -> Path:
    """`path` checked to be a cnn_zoo training checkpoint (before Lightning sees it); returns it resolved."""
    resolved, content = load_torch_file(
        path, "checkpoint", "pass ckpt_path=<run folder>/checkpoints/last.ckpt, or resume=<run folder>"
    )
    missing = [k for k in TRAINING_KEYS if not isinstance(content, dict) or k not in content]
    hparams = content.get("hyper_parameters") if isinstance(content, dict) else None
    if missing or not isinstance(hparams, dict) or "net" not in hparams or "data" not in hparams:
        raise CnnZooError(
            f"{resolved} is not a cnn_zoo training checkpoint (it lacks {', '.join(missing) or 'net and data'}); "
            "pass ckpt_path=<run folder>/checkpoints/last.ckpt"
        )
    return resolved


def resume_checkpoint(ckpt_path: Any, run_dir: str | Path) -> str | None:
    """`cfg.ckpt_path` for `Trainer.fit`: None, or a checked training checkpoint (`last`: the run folder's own)."""
    if not ckpt_path and slurm_requeued() and (Path(run_dir) / "checkpoints" / "last.ckpt").is_file():
        ckpt_path = "last"  # a requeued SLURM job continues where it stopped (cnn_zoo.callbacks.stop_signals)
    if not ckpt_path:
        return None
    if str(ckpt_path) == "last":
        last = Path(run_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise CnnZooError(
                f"ckpt_path=last: {last} does not exist; ckpt_path=last resumes the run in hydra.run.dir, "
                "use resume=<run folder> or ckpt_path=<checkpoint file>"
            )
        ckpt_path = last
    return str(training_checkpoint(ckpt_path))
