"""One writer for files that must never be seen half-written: checkpoints, sweep summaries, job records.

Without torch, so the Hydra callbacks that use it (`cnn_zoo.search.sweeps`) do not load it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | Path, content: str | bytes | Callable[[BinaryIO], object]) -> None:
    """Write `content` (text, bytes, or a function writing to the open file) to `path` through
    `.<name>.<pid>.tmp` in the same folder, fsync, then rename: a reader (a parallel job, a resumed run) sees
    the previous file or the new one whole, and a process killed during the write leaves the previous one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode() if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut once the folder is synced
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
