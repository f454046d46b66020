"""A linear warmup in front of the configured scheduler (`scheduler.warmup_epochs=`), as timm's `warmup_t`.

The warmup is torch's `LinearLR` (from `warmup_start_factor` x the rate up to the rate over `warmup_epochs`
epochs), a second Lightning scheduler beside the configured one: both are chainable, so the rate of epoch e is
the configured schedule's x the warmup factor (cosine: cosine(e) x min(1, ...); plateau: its cuts still apply).
Lightning stores both schedulers' states in each checkpoint, so a resumed run continues its warmup where it was.
"""

from __future__ import annotations

from typing import Any

import torch

from cnn_zoo.runtime.errors import CnnZooError

WARMUP_KEYS = ("warmup_epochs", "warmup_start_factor")


def split_warmup(config: dict[str, Any]) -> tuple[dict[str, Any], int, float]:
    """`config` without the warmup keys (what Lightning's scheduler dict accepts), the epochs and the start factor."""
    rest = {k: v for k, v in config.items() if k not in WARMUP_KEYS}
    epochs = config.get("warmup_epochs") or 0
    factor = config.get("warmup_start_factor")
    factor = 0.1 if factor is None else factor
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise CnnZooError(f"scheduler.warmup_epochs must be a whole number of epochs >= 0, got {epochs!r}")
    if not isinstance(factor, int | float) or not 0.0 < float(factor) <= 1.0:
        raise CnnZooError(f"scheduler.warmup_start_factor must be in (0, 1], got {factor!r}")
    return rest, int(epochs), float(factor)


def warmup_scheduler(optimizer: torch.optim.Optimizer, epochs: int, start_factor: float) -> dict[str, Any]:
    """Lightning's scheduler dict for the warmup, stepped once per epoch. Logged as `lr-warmup`: a TensorBoard
    curve, kept out of metrics.json like `lr-<optimizer>` (as `warmup` it was a stray metric there)."""
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=start_factor, total_iters=epochs)
    return {"scheduler": scheduler, "interval": "epoch", "frequency": 1, "name": "lr-warmup"}
