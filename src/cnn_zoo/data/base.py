"""Behaviour shared by every datamodule: loaders from config, the `DataSpec` it publishes, renamed options."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from cnn_zoo.data.batches import FinishingEpochLoader, FinishingLoader, stacked, tensor_batches
from cnn_zoo.data.sampling import EpochLoader, EpochRandomSampler
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)


def resolve_dir(path: str | Path) -> Path:
    """Expand `~` and make absolute, so messages name the real place that was searched."""
    return Path(path).expanduser().resolve()


def renamed(old: str, new: str, old_value: Any, new_value: Any, convert: Any = None) -> Any:
    """The value of an option under its new name; an old name still set wins, with a deprecation message."""
    if old_value is None:
        return new_value
    value = convert(old_value) if convert else old_value
    log.warning("data.%s is deprecated and will be removed: use data.%s=%s instead", old, new, value)
    return value


def require_fraction(name: str, value: Any) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise CnnZooError(f"data.{name} must be a fraction in [0, 1), got {value!r}")
    return float(value)


def require_positive(name: str, value: int) -> int:
    if int(value) <= 0:
        raise CnnZooError(f"data.{name} must be a positive integer, got {value!r}")
    return int(value)


class ZooDataModule(L.LightningDataModule):
    """Base datamodule.

    After `setup()` a subclass sets `train_set`, `val_set`, `test_set` and `spec` (a `DataSpec`): what the
    network is built from, the evaluation preprocessing and the split statistics; it travels inside every
    checkpoint, so prediction needs nothing else.
    """

    def __init__(self, batch_size: int = 64, num_workers: int = 0, pin_memory: bool = False) -> None:
        super().__init__()
        self.batch_size = require_positive("batch_size", batch_size)
        if int(num_workers) < 0:
            raise CnnZooError(f"data.num_workers must be >= 0, got {num_workers!r}")
        self.num_workers = int(num_workers)
        self.pin_memory = pin_memory
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.spec: DataSpec | None = None

    def save_artifacts(self, run_dir: Path) -> None:
        """Write what a run must keep beside its data spec (augmentation pipeline, vocabulary, ...); none by default."""

    def loader(self, dataset: Dataset | None, shuffle: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader")
        # shuffling by (seed, epoch), iterators seeded by their own generator: exact resumes (callbacks.resume)
        seed = torch.initial_seed()
        batched = tensor_batches(dataset)  # in-memory tensors: one indexing per batch, not per sample
        source = batched if batched is not None else dataset
        sampler = EpochRandomSampler(source, seed) if shuffle else None
        trainer = self.trainer
        if sampler is not None and trainer is not None and sampler.num_replicas != trainer.world_size:
            # Lightning keeps a DistributedSampler as it is: one made before the process group would serve every
            # rank the whole epoch
            raise RuntimeError(
                f"the training loader was built for {sampler.num_replicas} process(es) but the trainer runs "
                f"{trainer.world_size}: build it once the process group exists (in train_dataloader())"
            )
        # a dataset serving whole uint8 batches (`batched`) has them finished (normalised) in this process
        finish = getattr(source, "finish_batch", None) if getattr(source, "batched", False) else None
        if finish is not None:
            loader_class, extra = (FinishingEpochLoader if shuffle else FinishingLoader), {"finish": finish}
        else:
            loader_class, extra = (EpochLoader if shuffle else DataLoader), {}
        return loader_class(
            source,
            batch_size=self.batch_size,
            sampler=sampler,
            generator=torch.Generator().manual_seed(seed),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            **({"collate_fn": stacked} if batched is not None or finish is not None else {}),
            **extra,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.test_set)
