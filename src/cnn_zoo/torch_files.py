"""Reading torch files a user points at (checkpoints, weights), with one-line errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnn_zoo.errors import CnnZooError


def load_torch_file(path: str | Path, what: str, fix: str) -> tuple[Path, Any]:
    """`torch.load(weights_only=True)` of `path` on the CPU; a missing or unreadable file names `what` and the `fix`."""
    path = Path(str(path)).expanduser().resolve()
    if not path.is_file():
        raise CnnZooError(f"{what} not found: {path}; {fix}")
    try:
        return path, torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unsafe-global errors come as many types
        raise CnnZooError(f"cannot read {what} {path}: {str(err).splitlines()[0][:200]}") from err
