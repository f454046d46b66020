"""Options that fit only some data kinds: an image-only option with text or sequences is a user's mistake.

Flipping a review reverses its words and "zooming" a telemetry window stretches time: rather than a silent
no-op or a wrong result, each such option is one line naming it.
"""

from __future__ import annotations

from typing import Any

from cnn_zoo.data.spec import DataSpec
from cnn_zoo.errors import CnnZooError

IMAGE_ONLY = "applies to images only"


def refuse(option: str, value: Any, spec: DataSpec, fix: str) -> None:
    raise CnnZooError(f"{option}={value} {IMAGE_ONLY}, and this data ({spec.kind}) is not images: {fix}")


def check_model_options(spec: DataSpec, tta: dict[str, Any] | None, channels_last: bool) -> None:
    """TTA views (flips, zooms) and the NHWC memory layout need image batches."""
    if spec.kind == "image":
        return
    views = list((tta or {}).get("views") or [])
    if views:
        refuse("tta.views", views, spec, "use tta=none")
    if channels_last:
        refuse("model.channels_last", "true", spec, "set model.channels_last=false")


def check_data_options(augmentation: dict[str, Any] | None, spec: DataSpec) -> None:
    """Albumentations pipelines transform images; the other datamodules would silently ignore them."""
    transforms = list((augmentation or {}).get("transforms") or [])
    if spec.kind != "image" and transforms:
        names = [str(t.get("_target_", t)).rsplit(".", 1)[-1] for t in transforms]
        refuse("augmentation", names, spec, "use augmentation=none")
