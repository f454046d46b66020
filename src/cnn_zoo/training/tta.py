"""Test-time augmentation: deterministic views of a batch, and the merge of their class probabilities.

A view is a `+`-joined list of operations on an image batch (N, C, H, W):
`hflip`, `vflip`, `zoom_<factor>` (centre crop by `factor`, resized back), e.g. `hflip+zoom_1.1`.
The original batch is always the first view, so an empty list of views is plain prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cnn_zoo.runtime.errors import CnnZooError

MERGES: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda stacked: stacked.mean(dim=0),
    "max": lambda stacked: stacked.max(dim=0).values,
}


def zoom(batch: Tensor, factor: float) -> Tensor:
    """Crop the centre 1/factor of each image and resize it back: a zoom-in by `factor`."""
    height, width = batch.shape[-2:]
    crop_h, crop_w = max(1, round(height / factor)), max(1, round(width / factor))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = batch[..., top : top + crop_h, left : left + crop_w]
    return F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)


def parse_operation(name: str) -> Callable[[Tensor], Tensor]:
    if name == "hflip":
        return lambda batch: torch.flip(batch, dims=[-1])
    if name == "vflip":
        return lambda batch: torch.flip(batch, dims=[-2])
    if name.startswith("zoom_"):
        try:
            factor = float(name.removeprefix("zoom_"))
        except ValueError:
            factor = 0.0
        if factor <= 0:
            raise CnnZooError(f"tta view operation {name!r}: zoom needs a positive factor, e.g. zoom_1.1")
        return lambda batch: zoom(batch, factor)
    raise CnnZooError(f"unknown tta view operation {name!r}; use hflip, vflip or zoom_<factor>, joined by '+'")


def parse_view(spec: str) -> Callable[[Tensor], Tensor]:
    operations = [parse_operation(part.strip()) for part in spec.split("+") if part.strip()]

    def view(batch: Tensor) -> Tensor:
        for operation in operations:
            batch = operation(batch)
        return batch

    return view


class TestTimeAugmentation:
    """Average (or max) the probabilities over the original batch and each configured view."""

    def __init__(self, views: Sequence[str] = (), merge: str = "mean") -> None:
        if merge not in MERGES:
            raise CnnZooError(f"tta.merge must be one of {sorted(MERGES)}, got {merge!r}")
        self.view_names = list(views)
        self.views = [parse_view(spec) for spec in self.view_names]
        self.merge = MERGES[merge]

    @property
    def active(self) -> bool:
        return bool(self.views)

    def __call__(self, probabilities: Callable[[Tensor], Tensor], batch: Tensor) -> Tensor:
        outputs = [probabilities(batch)] + [probabilities(view(batch)) for view in self.views]
        return self.merge(torch.stack(outputs))
