"""Faults injected into a real run: a JPEG truncated on disk once the datamodule's setup has checked it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np


def write_truncatable_jpeg(path: Path) -> None:
    """A 64x64 noise JPEG: large enough that its first half passes `Image.verify()` and fails a full decode."""
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)


class TruncateAtStart(L.Callback):
    """Cuts `path` to half its bytes when training starts: after setup, before its first decode."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        whole = self.path.read_bytes()
        self.path.write_bytes(whole[: len(whole) // 2])
