"""Freed tensor memory kept in the C library's heap for the next training step: made by the entry points only.

A training step allocates and frees the same activations and gradients every time. glibc hands a freed block
over its adaptive mmap threshold back to the kernel, and trims its heap once enough of the top is free, so the
next step faults that memory in again (one page fault per 4 KB). Blocks up to 32 MB (glibc's largest threshold)
served from the heap, with up to 1 GB of free heap kept, take that away. Measured 2026-12-07 on 2 cores of an
AMD EPYC with AVX512-BF16, mnist_cnn bf16, alternating processes (docs/benchmarks/2026-12-07-amd-epyc-avx512bf16.md):
without it 1.37x the CPU seconds per epoch, with it (or the same by `GLIBC_TUNABLES`) 1.02x of the setting's.

Set by `cnn-zoo-<command>` / `python -m cnn_zoo.<command>` as their work starts, never by `import cnn_zoo`;
`CNN_ZOO_KEEP_FREED_MEMORY=0` leaves glibc's defaults, and a `MALLOC_*_` or `GLIBC_TUNABLES=glibc.malloc.*`
setting of yours is left to work. The process keeps its peak memory between steps instead of handing it back.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to this size come from the heap
TRIM_THRESHOLD = 1 << 30  # free heap kept before any is returned to the kernel
MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
OPT_OUT = "CNN_ZOO_KEEP_FREED_MEMORY"  # 0: glibc's own behaviour

kept_freed_memory = False  # what keep_freed_memory did, for the run's log


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
    if kept_freed_memory or malloc_set_by_you(environ) or environ.get(OPT_OUT, "1") == "0":
        return kept_freed_memory
    libc = glibc()
    if libc is not None:
        kept_freed_memory = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    return kept_freed_memory


def memory_status() -> str:
    """One line for the run's log: how freed blocks are kept."""
    if kept_freed_memory:
        return f"memory: freed blocks up to 32 MB kept for reuse, up to 1 GB of free heap ({OPT_OUT}=0: off)"
    if malloc_set_by_you(os.environ):
        return "memory: freed blocks as your MALLOC_* / GLIBC_TUNABLES settings say"
    return f"memory: freed blocks as the C library's defaults say ({OPT_OUT}={os.environ.get(OPT_OUT)})"
