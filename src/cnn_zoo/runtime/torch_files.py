"""Reading torch files a user points at (checkpoints, weights), with one-line errors instead of tracebacks.

Files are only ever read with `torch.load(weights_only=True)`. When that refuses a file, torch's own message
advises re-running with `weights_only=False`, which executes whatever code the file carries: the messages here
say what the file is instead, and never repeat that advice.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from cnn_zoo.runtime.errors import CnnZooError

GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def describe_load_error(err: BaseException, path: Path) -> str:
    """Why `torch.load(weights_only=True)` refused `path`, in words that do not suggest loading it unsafely."""
    text = str(err)
    found = GLOBAL.search(text)
    if isinstance(err, pickle.UnpicklingError) and found:
        return (
            f"it holds Python objects that only unpickling code can rebuild ({found.group(1)}); cnn_zoo files hold "
            "tensors and plain values only, so it was refused unread (it comes from another program, or is unsafe)"
        )
    if zipfile.is_zipfile(path):
        return "it is a damaged torch file (truncated or corrupt zip archive)"
    return "it is not a torch file (corrupt, truncated, or another format)"


def load_torch_file(path: str | Path, what: str, fix: str) -> tuple[Path, Any]:
    """`torch.load(weights_only=True)` of `path` on the CPU; a missing or unreadable file names `what` and the `fix`."""
    path = Path(str(path)).expanduser().resolve()
    if not path.is_file():
        raise CnnZooError(f"{what} not found: {path}; {fix}")
    if path.stat().st_size == 0:
        raise CnnZooError(f"cannot read {what} {path}: the file is empty (0 bytes); {fix}")
    try:
        return path, torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unsafe-global errors come as many types
        raise CnnZooError(f"cannot read {what} {path}: {describe_load_error(err, path)}; {fix}") from err
