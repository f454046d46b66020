"""How tensors get memory: freed blocks kept for the next training step, large ones on transparent huge pages.

Both are set when cnn_zoo is imported; your own settings win.

Kept for reuse (glibc's malloc). A training step allocates and frees the same activations and gradients every
time. By default glibc returns a freed block over its mmap threshold to the kernel, and trims the top of its heap
once more than twice that is free, so the next step takes one page fault per 4 KB to get it back. mnist_cnn's
training step (batch 64) took 660-3,800 page faults and 2-10 ms of system time (of a 13-22 ms step) in float32,
2,000 and 5-6 ms in bf16. With blocks up to 32 MB (glibc's largest threshold) served from the heap and up to 1 GB
of free heap kept: no faults, 12-14 against 14-21 ms a step in float32, 8-11 against 13-16 ms in bf16 (2 cores
of a shared VM, where a fault costs 1-2 us). Memory is not returned to the kernel between steps, so the process
keeps its peak; `MALLOC_TRIM_THRESHOLD_=131072` (or any `MALLOC_*_` or `GLIBC_TUNABLES=glibc.malloc...`
setting) restores glibc's own behaviour.

Huge pages (torch's THP_MEM_ALLOC_ENABLE). Blocks over 32 MB still get a mapping of their own, mapped afresh each
step: the cats/dogs small CNN (batch 32 at 180x180, bf16) took 77,000 page faults and 0.18 s of system time a step
(of 0.8 s of CPU time) and ran 420 ms a step. With THP_MEM_ALLOC_ENABLE=1, torch aligns tensors of 2 MB and more
at 2 MB and marks them for huge pages (madvise): 4,500 faults, 0.05 s of system time, 363 ms a step. torch reads
the variable once, at its first allocation of 2 MB or more, so it is set at import, where the kernel grants huge
pages on request (`always` or `madvise`).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

VARIABLE = "THP_MEM_ALLOC_ENABLE"
KERNEL_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to this size come from the heap
TRIM_THRESHOLD = 1 << 30  # free heap kept before any is returned to the kernel
MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

kept_freed_memory = False  # what keep_freed_memory did, for the run's log


def kernel_mode(setting: Path = KERNEL_SETTING) -> str | None:
    """The kernel's transparent-huge-page mode (`always`, `madvise` or `never`); None where it cannot be read."""
    try:
        words = setting.read_text().split()
    except OSError:
        return None
    return next((word.strip("[]") for word in words if word.startswith("[")), None)


def set_huge_page_default(environ: MutableMapping[str, str] = os.environ, setting: Path = KERNEL_SETTING) -> None:
    """THP_MEM_ALLOC_ENABLE=1 where the kernel grants huge pages on request and you have not set it yourself."""
    if VARIABLE not in environ and kernel_mode(setting) in ("always", "madvise"):
        environ[VARIABLE] = "1"


def malloc_set_by_you(environ: Mapping[str, str]) -> bool:
    return any(name in environ for name in MALLOC_VARIABLES) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")


def glibc() -> ctypes.CDLL | None:
    """The process's C library where it is glibc (which has mallopt's parameters above); None elsewhere."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Freed blocks up to 32 MB kept in the heap for reuse, unless you set malloc yourself or it is not glibc."""
    global kept_freed_memory
    libc = None if malloc_set_by_you(environ) else glibc()
    if libc is not None:
        kept_freed_memory = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    return kept_freed_memory


def memory_status() -> str:
    """One line for the run's log: how freed blocks are kept and what torch asked of the kernel's huge pages."""
    if kept_freed_memory:
        freed = "freed blocks up to 32 MB kept for reuse (up to 1 GB of free heap)"
    elif malloc_set_by_you(os.environ):
        freed = "freed blocks as your MALLOC_* / GLIBC_TUNABLES settings say"
    else:
        freed = "freed blocks as the C library's defaults say"
    mode = kernel_mode() or "unknown"
    setting = os.environ.get(VARIABLE)
    if setting == "1" and mode in ("always", "madvise"):
        pages = f"tensors of 2 MB and more on transparent huge pages ({VARIABLE}=1, kernel mode {mode})"
    else:
        pages = f"large tensors on 4 KB pages ({VARIABLE}={setting}, kernel mode {mode})"
    return f"memory: {freed}; {pages}"
