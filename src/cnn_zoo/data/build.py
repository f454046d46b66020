"""Building a dataset folder all at once: made beside its final place, renamed into it when complete.

An interrupted `prepare` leaves at most a hidden `.<name>.partial-*` folder (removed on the next run), never a
half-made dataset that a training run would read as complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """What a prepare step did: the dataset's folder, whether it was already there, and a one-line summary."""

    dataset: str
    folder: Path
    built: bool
    summary: str


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `final`, renamed to `final` when the block completes without error."""
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(f".{final.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted run
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=parent))
    except OSError as err:
        raise CnnZooError(f"cannot write into {parent} ({err}); choose a writable data_dir=...") from err
    try:
        yield work
        os.chmod(work, 0o755)  # mkdtemp makes it private; a dataset folder is not
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
