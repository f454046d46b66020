"""In-memory tensors served a whole batch per indexing operation instead of one sample at a time.

A DataLoader over a `TensorDataset` indexes it once per sample and stacks the samples again (64 small tensors
per MNIST batch); the DataLoader asks a dataset with `__getitems__` for the whole batch at once, so one
`tensor[indices]` per tensor replaces both. Same samplers, same order, same batches.

`CompactImages` keeps images in their stored form (MNIST's digits as uint8: a quarter of float32's memory, and no
pass over the whole set at start-up) and turns each batch, or sample, into the network's input on the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

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
