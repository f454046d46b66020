"""In-memory tensors served a whole batch per indexing operation instead of one sample at a time.

A DataLoader over a `TensorDataset` indexes it once per sample and stacks the samples again (64 small tensors
per MNIST batch); the DataLoader asks a dataset with `__getitems__` for the whole batch at once, so one
`tensor[indices]` per tensor replaces both. Same samplers, same order, same batches.

`ImageFiles` (cnn_zoo.data.image_folder) serves decoded uint8 batches the same way; `FinishingLoader` then
normalises them in the loading process (`LutNormalize`), after they crossed from the workers at a quarter of
float32's size.

`CompactImages` keeps images in their stored form (MNIST's digits as uint8: a quarter of float32's memory, and no
pass over the whole set at start-up) and turns each batch, or sample, into the network's input on the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from cnn_zoo.data.sampling import EpochLoader

Transform = Callable[[Tensor], Tensor]


class CompactImages(TensorDataset):
    """A `TensorDataset` whose first tensor (the inputs) goes through `transform` as samples or batches leave it."""

    def __init__(self, *tensors: Tensor, transform: Transform) -> None:
        super().__init__(*tensors)
        self.transform = transform

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        inputs, *rest = super().__getitem__(index)
        return (self.transform(inputs), *rest)


class TensorBatches(Dataset):
    """Rows `indices` (all rows when None) of equally long tensors; `__getitems__` returns one stacked batch, its
    first tensor through `transform` when one is given."""

    def __init__(
        self, tensors: tuple[Tensor, ...], indices: Tensor | None = None, transform: Transform | None = None
    ) -> None:
        self.tensors = tensors
        self.indices = indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.tensors[0])

    def rows(self, index: Any) -> Any:
        return self.indices[index] if self.indices is not None else index

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(self.taken(self.rows(index)))

    def __getitems__(self, indices: list[int]) -> list[Tensor]:
        return self.taken(self.rows(torch.as_tensor(indices, dtype=torch.long)))

    def taken(self, rows: Any) -> list[Tensor]:
        inputs, *rest = (tensor[rows] for tensor in self.tensors)
        return [inputs if self.transform is None else self.transform(inputs), *rest]


def tensor_batches(dataset: Dataset) -> TensorBatches | None:
    """The batch-indexed view of a `TensorDataset` or of (nested) `Subset`s of one; None for other datasets."""
    if isinstance(dataset, TensorDataset):
        transform = dataset.transform if isinstance(dataset, CompactImages) else None
        return TensorBatches(dataset.tensors, transform=transform)
    if isinstance(dataset, Subset):
        inner = tensor_batches(dataset.dataset)
        if inner is not None:
            rows = inner.rows(torch.as_tensor(dataset.indices, dtype=torch.long))
            return TensorBatches(inner.tensors, rows, inner.transform)
    return None


def stacked(batch: list[Tensor]) -> list[Tensor]:
    """`collate_fn` for `TensorBatches`: the batch arrives stacked (a list, as `default_collate` returns)."""
    return batch


class LutNormalize:
    """uint8 (N, C, H, W) -> float32: each channel through a 256-entry table, the per-sample pipeline's own.

    The table is that pipeline's output for an image holding every value 0..255 in every channel, so the batch's
    values are the ones the pipeline gives each sample (a lookup is exact; recomputing `(x - mean) / std` in
    another order of operations would differ in the last bit). Applied with OpenCV's `LUT`, plane by plane.
    """

    def __init__(self, tables: Tensor) -> None:
        self.tables = [table.reshape(1, 256).numpy().astype("float32") for table in tables.float()]

    @classmethod
    def of(cls, pipeline: Callable[[Any], Tensor], channels: int) -> LutNormalize:
        """The tables of a per-pixel `pipeline` (uint8 HWC array -> float CHW tensor), for `channels` channels."""
        import numpy as np

        ramp = np.repeat(np.arange(256, dtype=np.uint8).reshape(1, 256, 1), channels, axis=2)
        return cls(torch.as_tensor(pipeline(ramp)).reshape(channels, 256))

    def __call__(self, x: Tensor) -> Tensor:
        import cv2

        images = x.contiguous().numpy()
        out = torch.empty(x.shape, dtype=torch.float32)
        planes = out.numpy()
        for n in range(images.shape[0]):
            for c, table in enumerate(self.tables):
                cv2.LUT(images[n, c], table, dst=planes[n, c])
        return out


class FinishingLoader(DataLoader):
    """A DataLoader whose batches go through `finish` in the loading process, after the workers made them.

    `finish` is a constructor argument so that Lightning, rebuilding a loader with another sampler (DDP), keeps it.
    """

    def __init__(self, *args: Any, finish: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finish = finish

    def __iter__(self) -> Any:
        iterator = super().__iter__()
        return iterator if self.finish is None else FinishedIterator(iterator, self.finish)


class FinishingEpochLoader(FinishingLoader, EpochLoader):
    """`EpochLoader` (the order asked for at the first batch) with finished batches."""


class FinishedIterator:
    """`iterator`'s batches through `finish`; its length, and nothing started before the first `next()`."""

    def __init__(self, iterator: Any, finish: Callable[[Any], Any]) -> None:
        self.iterator = iterator
        self.finish = finish

    def __iter__(self) -> FinishedIterator:
        return self

    def __next__(self) -> Any:
        return self.finish(next(self.iterator))

    def __len__(self) -> int:
        return len(self.iterator)
