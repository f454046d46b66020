"""Samples of a split series: every row as a (1, features) sequence, or sliding windows (features, window)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from cnn_zoo.data.csv_table import Segment
from cnn_zoo.data.splits import dominant_class

MODES = ("row", "window")
WINDOW_LABELS = ("last", "any")


def with_differences(x: np.ndarray) -> np.ndarray:
    """Each feature's change since the previous row appended as extra features (0 on a piece's first row).

    Computed inside a piece, never across a split boundary: a slope or a jump, which a window shows only
    as a small difference between raw values, becomes a feature of its own.
    """
    return np.concatenate([x, np.diff(x, axis=0, prepend=x[:1])], axis=1)


# ---------------------------------------------------------------------- samples
def window_starts(length: int, window: int, stride: int) -> range:
    return range(0, length - window + 1, stride)


def window_label(labels: np.ndarray, rule: str) -> int:
    return int(labels[-1]) if rule == "last" else dominant_class(labels)


class Windows(Dataset):
    """Sliding windows over contiguous pieces, as (features, window) float32 tensors; made on access."""

    def __init__(self, pieces: Sequence[Segment], window: int, stride: int, rule: str) -> None:
        self.pieces = [torch.from_numpy(np.ascontiguousarray(p.x.T)) for p in pieces]
        self.window = window
        self.index = [(i, s) for i, p in enumerate(pieces) for s in window_starts(len(p), window, stride)]
        labels = [window_label(pieces[i].y[s : s + window], rule) for i, s in self.index]
        self.labels = torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        piece, start = self.index[item]
        return self.pieces[piece][:, start : start + self.window], self.labels[item]


def rows_dataset(pieces: Sequence[Segment]) -> TensorDataset:
    """Every row as a (1, features) sequence: the notes' reshape."""
    x = np.concatenate([p.x for p in pieces]) if pieces else np.zeros((0, 1), np.float32)
    y = np.concatenate([p.y for p in pieces]) if pieces else np.zeros(0, np.int64)
    return TensorDataset(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y))


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    return dataset.labels if isinstance(dataset, Windows) else dataset.tensors[1]


def as_arrays(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """All inputs (N, channels, length) and labels (N,) of a split: for scikit-learn baselines."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0].numpy(), dataset.tensors[1].numpy()
    x = torch.stack([dataset[i][0] for i in range(len(dataset))]) if len(dataset) else torch.zeros(0)
    return x.numpy(), dataset_labels(dataset).numpy()

