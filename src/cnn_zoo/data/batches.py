"""In-memory tensors served a whole batch per indexing operation instead of one sample at a time.

A DataLoader over a `TensorDataset` indexes it once per sample and stacks the samples again (64 small tensors
per MNIST batch); the DataLoader asks a dataset with `__getitems__` for the whole batch at once, so one
`tensor[indices]` per tensor replaces both. Same samplers, same order, same batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset


class TensorBatches(Dataset):
    """Rows `indices` (all rows when None) of equally long tensors; `__getitems__` returns one stacked batch."""

    def __init__(self, tensors: tuple[Tensor, ...], indices: Tensor | None = None) -> None:
        self.tensors = tensors
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.tensors[0])

    def rows(self, index: Any) -> Any:
        return self.indices[index] if self.indices is not None else index

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        row = self.rows(index)
        return tuple(tensor[row] for tensor in self.tensors)

    def __getitems__(self, indices: list[int]) -> list[Tensor]:
        rows = self.rows(torch.as_tensor(indices, dtype=torch.long))
        return [tensor[rows] for tensor in self.tensors]


def tensor_batches(dataset: Dataset) -> TensorBatches | None:
    """The batch-indexed view of a `TensorDataset` or of (nested) `Subset`s of one; None for other datasets."""
    if isinstance(dataset, TensorDataset):
        return TensorBatches(dataset.tensors)
    if isinstance(dataset, Subset):
        inner = tensor_batches(dataset.dataset)
        if inner is not None:
            return TensorBatches(inner.tensors, inner.rows(torch.as_tensor(dataset.indices, dtype=torch.long)))
    return None


def stacked(batch: list[Tensor]) -> list[Tensor]:
    """`collate_fn` for `TensorBatches`: the batch arrives stacked (a list, as `default_collate` returns)."""
    return batch
