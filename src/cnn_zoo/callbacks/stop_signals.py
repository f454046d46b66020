"""Stop signals (SIGTERM, Ctrl-C's SIGINT, SLURM's pre-kill SIGUSR1): finish the step, save, say how to continue.

Python's default SIGINT raises KeyboardInterrupt wherever the program is (inside an optimizer step too), and
Lightning's SIGTERM handling saves nothing; under SLURM with `auto_requeue` Lightning's own SIGUSR1 handler saves
`hpc_ckpt_N.ckpt` at the moment the signal comes, mid-step possibly. `StopSignals` (`conf/callbacks/
stop_signals.yaml`) only notes the signal; at the end of the training step then running it saves `last.ckpt`
(through the atomic checkpoint IO, with `ExactResume`'s batch position: a resumed run skips the batches already
trained and ends with the same metrics as a run never stopped) and raises `cnn_zoo.runtime.faults.Stopped`: the command
prints `stopped at epoch E, step S; continue with resume=<run>` and exits with 128 + the signal's number. A signal
during the last step of an epoch waits for the epoch's validation and end-of-epoch checkpoint instead. A second
Ctrl-C stops at once (KeyboardInterrupt).

Under SLURM, after saving on the cluster environment's requeue signal (Lightning's `SLURMEnvironment`, SIGUSR1 by
default; `conf/trainer/slurm.yaml` sets `auto_requeue` and the signal), the job is requeued with `scontrol requeue`
when `auto_requeue` is on; the requeued job finds `last.ckpt` in its run folder and continues from it
(`cnn_zoo.callbacks.checkpointing.resume_checkpoint`, `SLURM_RESTART_COUNT`).

A `Checkpoint` callback, so Lightning runs its hooks after every other callback's, `LatestCheckpoint` included.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Checkpoint

from cnn_zoo.callbacks.checkpointing import LatestCheckpoint
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.faults import Stopped
from cnn_zoo.runtime.lightning_compat import cluster_environment

log = logging.getLogger(__name__)


def parse_signal(name: str | int) -> signal.Signals:
    try:
        return signal.Signals(name) if isinstance(name, int) else signal.Signals[str(name).upper()]
    except (KeyError, ValueError):
        raise CnnZooError(f"callbacks.stop_signals.signals: {name!r} is not a signal name (e.g. SIGTERM)") from None


class StopSignals(Checkpoint):
    """Saves a checkpoint and stops at the end of the step during which a stop signal came."""

    best_model_path = ""  # read by the train command from `trainer.checkpoint_callback` when it is the only one

    def __init__(self, signals: Sequence[str | int] = ("SIGTERM", "SIGINT", "SIGUSR1")) -> None:
        self.signals = [parse_signal(s) for s in signals]
        self.received: int | None = None
        self.previous: dict[int, Any] = {}
        self.world_size = 1
        self.launcher: Any = None  # under DDP, rank zero's launcher: it passes SIGTERM on to the ranks it started

    # ------------------------------------------------------------------ handlers
    def handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        first = self.received is None
        self.received = signum
        if signum == signal.SIGTERM and first and self.launcher is not None:
            self.launcher.kill(signum)  # the ranks this process started note it too (they agree on the step anyway)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            current = signal.getsignal(signum)
            if current != self.handle:
                self.previous.setdefault(signum, current)
                signal.signal(signum, self.handle)

    def restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.world_size = trainer.world_size
        launcher = getattr(trainer.strategy, "launcher", None)
        self.launcher = launcher if self.world_size > 1 and getattr(launcher, "procs", None) else None
        if stage == "fit":
            self.received = None
            self.install()  # before the DataLoader workers are forked: they inherit it instead of dying on Ctrl-C

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registered its SIGTERM handler after `setup`; ours decides. Lightning's is not called: under DDP
        # it broadcasts from inside the handler, a collective at whatever point the signal comes, out of step with
        # the ranks' own collectives; the ranks agree on the stop in `should_stop` instead
        if signal.SIGTERM in self.signals and threading.current_thread() is threading.main_thread():
            lightning_handler = signal.getsignal(signal.SIGTERM)
            if lightning_handler != self.handle:
                self.previous[signal.SIGTERM] = lightning_handler
                signal.signal(signal.SIGTERM, self.handle)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        if not self.should_stop(trainer):
            return
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:
            return  # the epoch's last step: its validation and end-of-epoch checkpoint come first
        self.stop(trainer, self.save(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.should_stop(trainer):
            self.stop(trainer, self.save(trainer))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.restore()

    # ------------------------------------------------------------------ stopping
    def should_stop(self, trainer: L.Trainer) -> bool:
        decision = self.received is not None
        if trainer.world_size > 1:  # every rank stops at the same step, whichever got the signal
            decision = trainer.strategy.reduce_boolean_decision(decision, all=False)
            if decision and self.received is None:
                self.received = signal.SIGTERM
        return decision

    def save(self, trainer: L.Trainer) -> Path:
        """`last.ckpt` of this step (LatestCheckpoint's, unless it has just written this very step)."""
        latest = next((c for c in trainer.checkpoint_callbacks if isinstance(c, LatestCheckpoint)), None)
        if latest is None:
            path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            trainer.save_checkpoint(path)
            return path
        if latest._last_global_step_saved != trainer.global_step or not latest.last_model_path:
            latest.save_latest(trainer)
        return Path(latest.last_model_path)

    def stop(self, trainer: L.Trainer, checkpoint: Path) -> None:
        signum = int(self.received or signal.SIGTERM)
        if trainer.world_size > 1:
            from cnn_zoo.runtime.faults import ranks_will_stop

            ranks_will_stop()
        requeued = self.requeue(trainer, signum)
        log.info("saved %s at epoch %d, step %d", checkpoint, trainer.current_epoch + 1, trainer.global_step)
        raise Stopped(signum, trainer.current_epoch + 1, trainer.global_step, checkpoint.parent.parent, requeued)

    @staticmethod
    def requeue(trainer: L.Trainer, signum: int) -> bool:
        """`scontrol requeue <job>` on SLURM's requeue signal when its environment says `auto_requeue`."""
        environment = cluster_environment(trainer)
        if not (isinstance(environment, SLURMEnvironment) and environment.auto_requeue):
            return False
        if int(environment.requeue_signal or signal.SIGUSR1) != signum or not trainer.is_global_zero:
            return False
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ.get("SLURM_JOB_ID", "")
        if not re.fullmatch(r"[0-9_]+", job):
            log.warning("cannot requeue: no SLURM job id (SLURM_JOB_ID=%r)", job)
            return False
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if result.returncode != 0:
            log.warning("scontrol requeue %s failed (%d): %s", job, result.returncode, result.stderr.strip())
            return False
        log.info("requeued SLURM job %s", job)
        return True
