"""Tiny datasets written under tmp_path, in the exact on-disk formats the real data uses."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as LeCun's MNIST ships them: magic (type 0x08 = ubyte, ndim), sizes, raw bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def digit_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28x28 noise with a bright 6x6 block whose position encodes the label: learnable in a few steps."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[index, 4 + row * 12 : 10 + row * 12, 2 + col * 5 : 8 + col * 5] = 255
    return images


def make_mnist(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """`<root>/MNIST/raw/` with the four IDX files; returns `root` (the data_dir)."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", digit_images(labels, rng))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return root
