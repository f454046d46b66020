"""Progress for long data work: a bar on a terminal, one log line per finished stage everywhere.

A bar is for a person watching; a log file (or CI output) gets one line per stage, so it never fills with
redrawn bars. The bar goes to stderr and only when stderr is a terminal (`CNN_ZOO_PROGRESS=0|1` overrides).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm.auto import tqdm

log = logging.getLogger("cnn_zoo.runtime.progress")

T = TypeVar("T")


def bars_enabled() -> bool:
    """True when a progress bar should be drawn: stderr is a terminal, unless CNN_ZOO_PROGRESS says otherwise."""
    setting = os.environ.get("CNN_ZOO_PROGRESS", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


def human(count: float, unit: str) -> str:
    if unit != "B":
        return f"{count:,.0f} {unit}"
    for prefix in ("", "K", "M", "G"):
        if count < 1024 or prefix == "G":
            return f"{count:.1f} {prefix}B" if prefix else f"{count:.0f} B"
        count /= 1024
    return f"{count} B"  # unreachable


class Stage:
    """One unit of work counted in `unit`s: `update(n)` advances it; `close()` logs its one line."""

    def __init__(self, desc: str, total: int | None, unit: str) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.done = 0
        self.started = time.perf_counter()
        self.bar = (
            tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", leave=False, file=sys.stderr)
            if bars_enabled()
            else None
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        log.info("%s: %s in %.1f s", self.desc, human(self.done, self.unit), time.perf_counter() - self.started)


@contextmanager
def stage(desc: str, total: int | None = None, unit: str = "files") -> Iterator[Stage]:
    """A stage of work: `with stage("decoding train images", total=n) as s: ... s.update()`."""
    current = Stage(desc, total, unit)
    try:
        yield current
    finally:
        current.close()


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "files") -> Iterator[T]:
    """`items`, advancing one stage per item: `for path in track(paths, "reading reviews"): ...`."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with stage(desc, total, unit) as current:
        for item in items:
            yield item
            current.update()
