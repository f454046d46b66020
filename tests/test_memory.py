"""Tensor memory: freed blocks kept for reuse, huge pages for large tensors where the kernel grants them; the user's
own settings kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_zoo.memory import VARIABLE, glibc, kernel_mode, malloc_set_by_you, set_huge_page_default


def setting_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "enabled"
    path.write_text(text + "\n")
    return path


@pytest.mark.parametrize(
    ("text", "mode", "asked"),
    [("always [madvise] never", "madvise", True), ("[always] madvise never", "always", True),
     ("always madvise [never]", "never", False)],
)  # fmt: skip
def test_asked_for_where_the_kernel_grants_them(tmp_path: Path, text: str, mode: str, asked: bool) -> None:
    setting = setting_file(tmp_path, text)
    environ: dict[str, str] = {}
    set_huge_page_default(environ, setting)
    assert kernel_mode(setting) == mode
    assert environ == ({VARIABLE: "1"} if asked else {})


def test_your_own_value_and_unknown_kernels_are_left_alone(tmp_path: Path) -> None:
    environ = {VARIABLE: "0"}
    set_huge_page_default(environ, setting_file(tmp_path, "always [madvise] never"))
    assert environ == {VARIABLE: "0"}
    environ = {}
    set_huge_page_default(environ, tmp_path / "absent")
    assert environ == {} and kernel_mode(tmp_path / "absent") is None


PROBE = """
import resource, cnn_zoo, os, torch
from cnn_zoo.memory import memory_status
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(64 << 20, dtype=torch.uint8)  # over malloc's mmap threshold: mapped, touched, unmapped each time
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before,
      memory_status(), sep="|")
"""


def probe(**environ: str) -> tuple[str, int, str]:
    env = {k: v for k, v in os.environ.items() if k != VARIABLE} | environ
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    variable, faults, status = result.stdout.strip().split("|")
    return variable, int(faults), status


@pytest.mark.skipif(kernel_mode() not in ("always", "madvise"), reason="the kernel grants no huge pages on request")
def test_importing_cnn_zoo_puts_large_tensors_on_huge_pages() -> None:
    """Five 64 MB tensors: 5 x 16,384 page faults on 4 KB pages, 20 times fewer (and fewer) on 2 MB ones."""
    variable, faults, status = probe()
    assert variable == "1" and "on transparent huge pages" in status
    kept_variable, faults_on_small_pages, kept_status = probe(**{VARIABLE: "0"})
    assert kept_variable == "0" and f"large tensors on 4 KB pages ({VARIABLE}=0" in kept_status
    assert faults_on_small_pages > 5 * 16_000
    assert faults < faults_on_small_pages / 20


def test_your_own_malloc_settings_are_recognised() -> None:
    assert not malloc_set_by_you({}) and not malloc_set_by_you({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"})
    assert malloc_set_by_you({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert malloc_set_by_you({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"})


STEPS = """
import resource, cnn_zoo, torch
from cnn_zoo.memory import memory_status


def step():  # a training step's pattern: a few mid-sized activations, then all freed
    blocks = [torch.ones(6 << 20, dtype=torch.uint8) for _ in range(4)]
    return sum(int(b[0]) for b in blocks)


for _ in range(10):  # the heap settles: small allocations made meanwhile can take a part of the freed space
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, memory_status(), sep="|")
"""


def steps_faults(**environ: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | {VARIABLE: "0"} | environ
    result = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    faults, status = result.stdout.strip().split("|")
    return int(faults), status


@pytest.mark.skipif(glibc() is None, reason="glibc's malloc only")
def test_importing_cnn_zoo_keeps_freed_blocks_for_the_next_step() -> None:
    """Five steps of 4 x 6 MB: 5 x 4 x 1,536 page faults when glibc returns the blocks, none when they are kept."""
    faults, status = steps_faults()
    assert "freed blocks up to 32 MB kept for reuse" in status
    faults_returned, own_status = steps_faults(MALLOC_TRIM_THRESHOLD_="131072")  # yours: kept, and it returns them
    assert "as your MALLOC_* / GLIBC_TUNABLES settings say" in own_status
    assert faults_returned > 5 * 4 * 1_500
    assert faults < faults_returned / 10  # an occasional heap extension (1,536 faults) aside: none
    _, default_status = steps_faults(CNN_ZOO_KEEP_FREED_MEMORY="0")
    assert "as the C library's defaults say (CNN_ZOO_KEEP_FREED_MEMORY=0)" in default_status
