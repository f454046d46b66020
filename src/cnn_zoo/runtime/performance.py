"""The fast path's one switch, `fast=auto|true|false`: bf16 autocast + channels_last where the hardware has bf16;
and how OpenMP threads wait, chosen by the command-line entry points (never by `import cnn_zoo`).

`auto` (the default) turns it on only where bf16 matrix units exist, detected rather than assumed: a CUDA GPU
that supports bf16, or a CPU with AVX512-BF16 or AMX (oneDNN runs bf16 convolutions natively there, 2-4x faster
than float32 on these networks at the same accuracy). Elsewhere (an AVX2-only CPU, where bf16 is emulated and
slower than float32) it stays float32. Resolved when the config is, so the run folder's config shows the choice.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cnn_zoo.runtime.errors import CnnZooError

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
SWITCH = ("auto", "true", "false")
OPENMP_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# How OpenMP threads wait between kernels decides a small network's speed on a few cores. Measured on 2 cores
# (mnist_cnn training step, 2026-12-01): spinning briefly, 20-22 ms a step; sleeping (passive), 29-31 ms. With
# another process busy on one core the order flips: passive 29-34 ms, spinning 44-100 ms (and 102 s for 100 steps
# on a loaded host). So the threads spin when the cores are idle at start, and sleep otherwise. How long they spin
# depends on whether DataLoader worker processes will share the cores (2026-12-03, 2 cores, alternating runs):
# without workers libgomp's own 300,000 spins made a mnist_cnn epoch 8% faster than 10,000 (5.32-5.54 s against
# 5.78-5.99 s); beside cats/dogs' 2 workers they made it 3-10% slower (18.6-19.4 s against 17.4-18.9 s).
SPIN_WHEN_IDLE = {"GOMP_SPINCOUNT": "300000"}  # libgomp's default, written out so that the log says it
SPIN_BRIEFLY_BESIDE_WORKERS = {"GOMP_SPINCOUNT": "10000"}  # short enough to leave the workers their core time
SLEEP_WHEN_BUSY = {"OMP_WAIT_POLICY": "PASSIVE"}
CHOICE_VARIABLE = "CNN_ZOO_OPENMP_CHOICE"  # child processes (DDP ranks, a benchmark's runs) keep the parent's choice
OFF_SWITCH = "CNN_ZOO_TUNE_OPENMP"  # 0: the commands leave OpenMP's own defaults
IDLE_CORES_NEEDED = 0.8  # the share of the machine's cores idle at start for spinning to pay


@dataclass(frozen=True)
class OpenMPChoice:
    """What `set_openmp_defaults` chose and why, for the run's log."""

    settings: dict[str, str]
    reason: str

    def __str__(self) -> str:
        shown = " ".join(f"{name}={value}" for name, value in self.settings.items()) or "left as they were"
        return f"OpenMP waiting: {shown} ({self.reason})"


openmp_choice = OpenMPChoice({}, "not chosen: torch was imported before cnn_zoo")
expected_loader_workers = 0  # DataLoader worker processes the run will start (`expect_loader_workers`)


def expect_loader_workers(count: int) -> None:
    """Tell the OpenMP choice, before torch is imported, how many DataLoader worker processes will share the cores."""
    global expected_loader_workers
    expected_loader_workers = max(0, int(count))


PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuTimes:
    """All cores' time since boot, from /proc/stat's first line (clock ticks): what every core did meanwhile."""

    idle: int  # idle + iowait
    steal: int  # taken by the hypervisor for other guests: this machine's cores did not run at all
    total: int  # user .. steal

    @classmethod
    def read(cls, stat: Path = PROC_STAT) -> CpuTimes | None:
        """None where it cannot be read (not Linux)."""
        try:
            fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
            return cls(idle=fields[3] + fields[4], steal=fields[7], total=sum(fields[:8]))
        except (OSError, ValueError, IndexError):
            return None


def idle_share(stat: Path = PROC_STAT, interval_s: float = 0.1) -> float | None:
    """The share of all cores idle over `interval_s` (Linux /proc/stat); None where it cannot be read."""
    sample = LoadSample.start(stat)
    time.sleep(interval_s)
    return sample.idle_share_of_others()


def own_cpu_ticks() -> float:
    """This process's CPU time so far (all its threads), in /proc/stat's clock ticks (100 a second where the
    platform does not say)."""
    times = os.times()
    sysconf = getattr(os, "sysconf", None)  # absent on Windows, which has no /proc/stat either
    return (times.user + times.system) * (sysconf("SC_CLK_TCK") if sysconf else 100)


@dataclass(frozen=True)
class LoadSample:
    """The cores' times and this process's own CPU time at one moment: how idle the machine was since, apart from
    this process (which is busy importing meanwhile), is the load that OpenMP's threads will share the cores with."""

    stat: Path
    cores: CpuTimes | None
    own_ticks: float
    at: float

    @classmethod
    def start(cls, stat: Path = PROC_STAT) -> LoadSample:
        return cls(stat, CpuTimes.read(stat), own_cpu_ticks(), time.monotonic())

    def idle_share_of_others(self, least_s: float = 0.0) -> float | None:
        """The share of the cores idle or busy with this process since `start` (at least `least_s` after it)."""
        time.sleep(max(0.0, least_s - (time.monotonic() - self.at)))
        after = CpuTimes.read(self.stat)
        if self.cores is None or after is None or after.total <= self.cores.total:
            return None
        ours = max(0.0, own_cpu_ticks() - self.own_ticks)
        return min(1.0, (after.idle - self.cores.idle + ours) / (after.total - self.cores.total))


def openmp_settings(environ: Mapping[str, str], idle: float | None, loader_workers: int = 0) -> OpenMPChoice:
    """The OpenMP wait settings to add to `environ`: none where the user or a parent process set them."""
    if environ.get(OFF_SWITCH) == "0":
        return OpenMPChoice({}, f"OpenMP's own defaults ({OFF_SWITCH}=0)")
    if CHOICE_VARIABLE in environ:
        return OpenMPChoice({}, f"the parent process chose {environ[CHOICE_VARIABLE]}")
    if any(name in environ for name in OPENMP_SETTINGS):
        return OpenMPChoice({}, "set by you")
    if idle is None:
        return OpenMPChoice({}, "OpenMP's defaults: the CPU load is not readable here")
    if idle >= IDLE_CORES_NEEDED and loader_workers:
        reason = f"{idle:.0%} of the cores idle at start, {loader_workers} DataLoader workers beside: spin briefly"
        return OpenMPChoice(dict(SPIN_BRIEFLY_BESIDE_WORKERS), reason)
    if idle >= IDLE_CORES_NEEDED:
        return OpenMPChoice(dict(SPIN_WHEN_IDLE), f"{idle:.0%} of the cores idle at start, no DataLoader workers: spin")
    return OpenMPChoice(dict(SLEEP_WHEN_BUSY), f"only {idle:.0%} of the cores idle at start: sleep while waiting")


LEAST_SAMPLE_S = 0.1  # /proc/stat counts in 10 ms ticks: a shorter look could not tell 80% idle from 100%


class ChooseOpenMPBeforeTorch(importlib.abc.MetaPathFinder):
    """Makes the OpenMP choice the moment `torch` is first imported (OpenMP reads its settings as torch loads), from
    the load seen since `import cnn_zoo`: the look at the cores overlaps the imports and Hydra's composition in
    between instead of holding start-up for 0.1 s, and a process that never loads torch (`--help`) never waits."""

    def __init__(self, sample: LoadSample) -> None:
        self.sample = sample
        self.done = False  # it stays in sys.meta_path: removing it could make another thread's import skip a finder

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: object = None) -> None:
        if fullname == "torch" and not self.done:
            self.done = True
            try:
                idle = self.sample.idle_share_of_others(least_s=LEAST_SAMPLE_S)
            except Exception:  # noqa: BLE001  (nothing here may stop torch from importing: OpenMP's defaults then)
                idle = None
            choose_openmp_settings(idle)
        return None  # the usual finders import it


def choose_openmp_settings(idle: float | None) -> None:
    """Set the chosen OpenMP wait settings in the environment, for this process and its children."""
    global openmp_choice
    openmp_choice = openmp_settings(os.environ, idle, expected_loader_workers)
    if openmp_choice.settings:
        os.environ.update(openmp_choice.settings)
        os.environ[CHOICE_VARIABLE] = str(openmp_choice).removeprefix("OpenMP waiting: ")


def set_openmp_defaults() -> None:
    """Choose how OpenMP threads wait, before torch loads (OpenMP reads its settings then); the user's win.

    Called by the command-line entry points only (`cnn_zoo.cli.hydra_entry`, `cnn_zoo.train.main`): a process-wide
    setting is the command's to make, not a library import's. `CNN_ZOO_TUNE_OPENMP=0` leaves OpenMP's defaults.
    """
    global openmp_choice
    if "torch" in sys.modules or any(isinstance(f, ChooseOpenMPBeforeTorch) for f in sys.meta_path):
        return  # already chosen, or to be chosen by the hook an earlier call installed
    if OFF_SWITCH in os.environ or CHOICE_VARIABLE in os.environ or any(n in os.environ for n in OPENMP_SETTINGS):
        choose_openmp_settings(None)
        return
    openmp_choice = OpenMPChoice({}, "to be chosen when torch is imported")
    sys.meta_path.insert(0, ChooseOpenMPBeforeTorch(LoadSample.start()))


def flush_denormals(enabled: bool = True) -> str:
    """Denormal floats as zero on the CPU (FTZ/DAZ), as TensorFlow's threads run; says what was set, for the log.

    RMSprop's running average of a gradient that stays zero (a dead ReLU's weights) shrinks by `alpha` every step
    and falls below float32's smallest normal number (1.2e-38) after about 800 steps (Adam's first moment too):
    after 2 MNIST epochs 5,500 of mnist_cnn's 94,000 averages were denormal, and CPUs compute on those in
    microcode (its RMSprop step on that state: 0.43-0.57 ms, 0.29-0.31 ms flushed). No accuracy changes: the two
    runs' metrics agree to the last digit. Call it before torch's first parallel operation: the OpenMP threads
    started afterwards inherit the setting (a new thread copies its creator's floating-point environment).
    """
    import torch

    if not enabled:
        torch.set_flush_denormal(False)
        return "denormal floats: kept (flush_denormal=false)"
    if torch.set_flush_denormal(True):
        return "denormal floats: flushed to zero (FTZ/DAZ)"
    return "denormal floats: kept (this CPU cannot flush them)"


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def cuda_check_by_runtime_without_devices() -> str | None:
    """Where NVML finds no CUDA device, ask the CUDA runtime instead; says so for the log, else None.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 at import (a check that cannot spoil a later fork), and torch's
    optimizers ask whether CUDA is available at every step (their graph-capture check). Without an NVIDIA driver
    the NVML check searches the library path for libnvidia-ml at every call: 11 system calls, 50-70 us a step here,
    and more on a cluster's network file systems. Where no device is found, the runtime's answer is the same
    (1 us, remembered), and without a device there is no CUDA state for a fork to spoil.
    """
    import torch

    if os.environ.get(NVML_CHECK) != "1" or not torch.backends.cuda.is_built() or torch.cuda.is_available():
        return None
    os.environ[NVML_CHECK] = "0"
    return "CUDA: no device found through NVML; availability is asked of the CUDA runtime from now on"


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
    """`model.channels_last` for image models: on CPU always, on a GPU with the fast path.

    oneDNN's NHWC kernels are faster in float32 too (2 AVX2 cores, training step: mnist_cnn 20-22 ms against
    31-46 ms, the cats/dogs small CNN 1.43 s against 1.94 s, LeNet 77-88 ms against 88-101 ms); on GPUs NHWC
    pays with 16-bit tensor cores.
    """
    enabled = fast_enabled(fast, accelerator)  # checks the value
    return enabled or not uses_cuda(str(accelerator))


def register_resolvers() -> None:
    """`${fast_precision:${fast},${trainer.accelerator}}` and `${fast_channels_last:...}` for the configs."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("fast_precision", fast_precision, replace=True)
    OmegaConf.register_new_resolver("fast_channels_last", fast_channels_last, replace=True)
