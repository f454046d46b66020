"""Options that fit only some data kinds: an image-only option with text or sequences is a user's mistake.

Flipping a review reverses its words and "zooming" a telemetry window stretches time: rather than a silent
no-op or a wrong result, each such option is one line naming it. Which kind takes which option is the kind's own
(`DataKind.accepts`); this module only says which options a run set.
"""

from __future__ import annotations

from typing import Any

from cnn_zoo.data.kinds import KindOption
from cnn_zoo.data.spec import DataSpec


def check_model_options(spec: DataSpec, tta: dict[str, Any] | None, channels_last: bool) -> None:
    """TTA views (flips, zooms) and the NHWC memory layout."""
    used = []
    views = list((tta or {}).get("views") or [])
    if views:
        used.append(KindOption("tta", f"tta.views={views}", "use tta=none"))
    if channels_last:
        used.append(KindOption("channels_last", "model.channels_last=true", "set model.channels_last=false"))
    spec.data_kind.check_options(used)


def check_data_options(augmentation: dict[str, Any] | None, spec: DataSpec) -> None:
    """Albumentations pipelines: a datamodule that does not take them would silently ignore them."""
    transforms = list((augmentation or {}).get("transforms") or [])
    if transforms:
        names = [str(t.get("_target_", t)).rsplit(".", 1)[-1] for t in transforms]
        spec.data_kind.check_options([KindOption("augmentation", f"augmentation={names}", "use augmentation=none")])
