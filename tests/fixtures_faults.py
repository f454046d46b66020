"""Faults injected into a real run at a chosen training step, through test-only callbacks (the config stays the same).

`+callbacks.inject._target_=tests.fixtures_faults.InjectFault` in a run's overrides; the fault and its step come
from the environment (`CNN_ZOO_TEST_FAULT=<kind>`, `CNN_ZOO_TEST_FAULT_STEP=<global step>`), so a resumed run
(`resume=` takes no new overrides) is the same config with the variables unset.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

FAULT, STEP, SLEEP = "CNN_ZOO_TEST_FAULT", "CNN_ZOO_TEST_FAULT_STEP", "CNN_ZOO_TEST_STEP_SLEEP"
SIGNALS = {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT, "sigusr1": signal.SIGUSR1}


def children(pid: int) -> list[int]:
    """The processes `pid` started (DataLoader workers), from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def fill_disk(filler: Path) -> None:
    """Fill the filesystem `filler` is on (another program's file, beside the run folder) to its last byte."""
    with open(filler, "ab", buffering=0) as handle:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise


class InjectFault(L.Callback):
    """Before training step `$CNN_ZOO_TEST_FAULT_STEP`: `$CNN_ZOO_TEST_FAULT` happens.

    nan: a weight becomes NaN (the loss of this step is NaN); cuda_oom / cpu_oom / memory: the error torch (or
    Python) raises when memory runs out; disk_full_event: ENOSPC writing a TensorBoard event file; sigterm /
    sigint / sigusr1: this process gets the signal; fill_disk: the run folder's filesystem is filled by a
    file `filler` beside the run folder (delete it to free the space), fill_disk_log: and a record is logged;
    fill_disk_event: and a TensorBoard text event is written; fill_disk_after_test: the disk filled after testing;
    kill_worker: a DataLoader worker is SIGKILLed (as the kernel's
    OOM killer does). `$CNN_ZOO_TEST_STEP_SLEEP` seconds of sleep before every step make a run long enough to be
    signalled from outside.
    """

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "test" and os.environ.get(FAULT) == "fill_disk_after_test":  # metrics.json is the next write
            fill_disk(Path(trainer.default_root_dir).resolve().parent / "filler")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if os.environ.get(SLEEP):
            time.sleep(float(os.environ[SLEEP]))
        kind, at = os.environ.get(FAULT), os.environ.get(STEP)
        if kind in (None, "fill_disk_after_test") or at is None or trainer.global_step != int(at):
            return
        if kind == "nan":
            with torch.no_grad():
                next(pl_module.parameters()).fill_(math.nan)
        elif kind == "cuda_oom":
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"
            )
        elif kind == "cpu_oom":
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                "you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"
            )
        elif kind == "memory":
            raise MemoryError()
        elif kind == "disk_full_event":  # what TensorBoard's writer raises in the main thread when the disk fills
            event = Path(trainer.default_root_dir) / "tensorboard" / "events.out.tfevents.1.host"
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(event))
        elif kind in ("fill_disk", "fill_disk_log"):
            fill_disk(Path(trainer.default_root_dir).resolve().parent / "filler")
            if kind == "fill_disk_log":  # a record longer than a page: train.log needs a new block
                logging.getLogger("cnn_zoo.train").info("the disk is full now %s", "." * 8192)
        elif kind == "fill_disk_event":  # TensorBoard's writer thread gets more than a page to write
            fill_disk(Path(trainer.default_root_dir).resolve().parent / "filler")
            trainer.logger.experiment.add_text("filler", "." * 8192, trainer.global_step)
            trainer.logger.experiment.flush()
        elif kind in SIGNALS:
            if trainer.is_global_zero:  # as `kill <pid>` does: to the launching process only (under DDP too)
                os.kill(os.getpid(), SIGNALS[kind])
        elif kind == "kill_worker":
            workers = children(os.getpid())
            assert workers, "no DataLoader worker to kill (data.num_workers=0?)"
            os.kill(workers[0], signal.SIGKILL)
            time.sleep(1.0)  # the worker is gone before the next batch is asked of it
        else:
            raise ValueError(f"unknown {FAULT}={kind!r}")
