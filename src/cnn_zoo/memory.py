"""How tensors get memory: freed blocks kept for the next training step, large ones on transparent huge pages.

Both are set when cnn_zoo is imported; your own settings win.

Kept for reuse (glibc's malloc). A training step allocates and frees the same activations and gradients every
time. glibc returns a freed block over its mmap threshold to the kernel, and trims the top of its heap once more
than twice that is free; the threshold adapts to the blocks freed, and whether the top is free depends on what
else was allocated meanwhile. So whether a step faults its memory in again, one page fault per 4 KB, depends on
the heap's layout: in cnn_zoo's full runs it did not (the same 166,000 faults for 2 and for 400 mnist_cnn steps),
in a bare loop over mnist_cnn's step it did, every step: 660-3,800 faults and 2-10 ms of system time in a 13-22 ms
float32 step, 2,000 and 5-6 ms in bf16. Blocks up to 32 MB (glibc's largest threshold) served from the heap, with
up to 1 GB of free heap kept, take that chance away: the bare loop then takes no faults (float32 12-14 against
14-21 ms a step, bf16 8-11 against 13-16), the full runs still none. The process keeps its peak memory between
steps instead of handing it back. `CNN_ZOO_KEEP_FREED_MEMORY=0` leaves glibc's defaults; a `MALLOC_*_` or
`GLIBC_TUNABLES=glibc.malloc.*` setting of yours is left to work (note that any of them turns glibc's adaptive
threshold off).

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
OPT_OUT = "CNN_ZOO_KEEP_FREED_MEMORY"  # 0: glibc's own behaviour

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
    left_alone = malloc_set_by_you(environ) or environ.get(OPT_OUT, "1") == "0"
    libc = None if left_alone else glibc()
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
        freed = f"freed blocks as the C library's defaults say ({OPT_OUT}={os.environ.get(OPT_OUT)})"
    mode = kernel_mode() or "unknown"
    setting = os.environ.get(VARIABLE)
    if setting == "1" and mode in ("always", "madvise"):
        pages = f"tensors of 2 MB and more on transparent huge pages ({VARIABLE}=1, kernel mode {mode})"
    else:
        pages = f"large tensors on 4 KB pages ({VARIABLE}={setting}, kernel mode {mode})"
    return f"memory: {freed}; {pages}"
