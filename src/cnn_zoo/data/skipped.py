"""Images that fail to decode mid-run (`data.cache=none`): counted, logged, and fatal past a share of a split.

A file that passed the setup check can still fail when it is decoded for a batch (changed or truncated since,
on a flaky network disk). `ImageFiles` then serves the next readable image instead and flags the file in a
shared-memory tensor (so DataLoader workers' flags reach the training process); this callback reads the flags:
after every batch it stops the run with one line when more than `data.max_skipped_share` of a split has failed,
and at each training epoch's end it logs `data/skipped_images` (training + validation files, so it lands in
metrics.json and the loggers) and names the files newly skipped in one warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L

from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)
METRIC = "data/skipped_images"


class SkippedImages(L.Callback):
    """Counts and limits the decode failures of a datamodule with `decode_failures()`; a no-op for any other."""

    def __init__(self) -> None:
        self.reported: set[Path] = set()

    @staticmethod
    def failures(trainer: L.Trainer) -> dict[str, tuple[list[Path], int]]:
        source = getattr(getattr(trainer, "datamodule", None), "decode_failures", None)
        return source() if callable(source) else {}

    def check(self, trainer: L.Trainer) -> None:
        failures = self.failures(trainer)
        if not failures:
            return
        share = float(trainer.datamodule.max_skipped_share)
        for split, (files, size) in failures.items():
            if size and len(files) > share * size:
                raise CnnZooError(
                    f"{len(files)} of {size} images of the {split} split failed to decode during the run "
                    f"(first: {files[0]}), more than data.max_skipped_share={share:g}: replace or remove them "
                    "(changed since the run started?), or raise data.max_skipped_share"
                )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.check(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        failures = self.failures(trainer)
        if not failures:
            return
        files = [path for split in ("train", "val") for path in failures.get(split, ([], 0))[0]]
        new = [path for path in files if path not in self.reported]
        if new:
            log.warning("skipped %d image(s) that failed to decode this epoch: %s", len(new), ", ".join(map(str, new)))
            self.reported.update(new)
        pl_module.log(METRIC, float(len(files)), reduce_fx="sum", sync_dist=trainer.world_size > 1)
