"""The fast path's one switch, `fast=auto|true|false`: bf16 autocast + channels_last where the hardware has bf16.

`auto` (the default) turns it on only where bf16 matrix units exist, detected rather than assumed: a CUDA GPU
that supports bf16, or a CPU with AVX512-BF16 or AMX (oneDNN runs bf16 convolutions natively there, 2-4x faster
than float32 on these networks at the same accuracy). Elsewhere (an AVX2-only CPU, where bf16 is emulated and
slower than float32) it stays float32. Resolved when the config is, so the run folder's config shows the choice.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnn_zoo.errors import CnnZooError

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
SWITCH = ("auto", "true", "false")
# OpenMP threads that spin while they wait take the CPU from the threads doing the work whenever the cores are
# shared (a Python thread, a DataLoader worker, another process): 100 MNIST steps took 102 s instead of 15-22 s
# with 2 spinning threads on a busy 2-core host. Passive waiting keeps the time steady. The user's setting wins.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def set_openmp_defaults() -> None:
    """Set `OPENMP_DEFAULTS` where unset; only effective before torch is imported (OpenMP reads them at load)."""
    for name, value in OPENMP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is absent (then torch's capability decides)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """AVX512-BF16 or AMX in the CPU flags; without flags, torch's dispatch capability (AVX512 at least)."""
    flags = cpu_flags() if flags is None else flags
    if flags:
        return any(flag in flags for flag in BF16_CPU_FLAGS)
    import torch

    return "AVX512" in torch.backends.cpu.get_cpu_capability() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def uses_cuda(accelerator: str) -> bool:
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def bf16_native(accelerator: str) -> bool:
    """True where bf16 runs on dedicated units: a bf16-capable CUDA device, or a bf16 CPU."""
    if uses_cuda(accelerator):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def fast_enabled(fast: str | bool, accelerator: str = "auto") -> bool:
    value = str(fast).lower()
    if value not in SWITCH:
        raise CnnZooError(f"fast must be one of {', '.join(SWITCH)}, got {fast!r}")
    return value == "true" or (value == "auto" and bf16_native(str(accelerator)))


def fast_precision(fast: str | bool, accelerator: str = "auto") -> str:
    """`trainer.precision`: bf16-mixed on the fast path, else 32-true."""
    return "bf16-mixed" if fast_enabled(fast, accelerator) else "32-true"


def fast_channels_last(fast: str | bool, accelerator: str = "auto") -> bool:
    """`model.channels_last` for image models: NHWC pays off with bf16 only (no gain in float32 on CPU)."""
    return fast_enabled(fast, accelerator)


def register_resolvers() -> None:
    """`${fast_precision:${fast},${trainer.accelerator}}` and `${fast_channels_last:...}` for the configs."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("fast_precision", fast_precision, replace=True)
    OmegaConf.register_new_resolver("fast_channels_last", fast_channels_last, replace=True)
