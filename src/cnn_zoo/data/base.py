"""Behaviour shared by every datamodule: loaders from config, and the `facts` contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from cnn_zoo.errors import CnnZooError


def resolve_dir(path: str | Path) -> Path:
    """Expand `~` and make absolute, so messages name the real place that was searched."""
    return Path(path).expanduser().resolve()


def require_positive(name: str, value: int) -> int:
    if int(value) <= 0:
        raise CnnZooError(f"data.{name} must be a positive integer, got {value!r}")
    return int(value)


class ZooDataModule(L.LightningDataModule):
    """Base datamodule.

    After `setup()` a subclass sets `train_set`, `val_set`, `test_set` and `facts`: a plain dict
    (num_classes, class_names, in_channels, input_size, preprocessing, ...) that the model is built
    from and that travels inside every checkpoint, so prediction needs nothing else.
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
        self.facts: dict[str, Any] = {}

    def save_artifacts(self, run_dir: Path) -> None:
        """Write what a run must keep beside its facts (augmentation pipeline, vocabulary, ...); none by default."""

    def loader(self, dataset: Dataset | None, shuffle: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader")
        from cnn_zoo.data.batches import stacked, tensor_batches

        batched = tensor_batches(dataset)  # in-memory tensors: one indexing per batch, not per sample
        return DataLoader(
            batched if batched is not None else dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            **({"collate_fn": stacked} if batched is not None else {}),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.test_set)
