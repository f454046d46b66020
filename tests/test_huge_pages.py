"""Transparent huge pages for large tensors: asked for at import where the kernel grants them, the user's value kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_zoo.huge_pages import VARIABLE, kernel_mode, set_huge_page_default


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
from cnn_zoo.huge_pages import huge_pages_status
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(64 << 20, dtype=torch.uint8)  # over malloc's mmap threshold: mapped, touched, unmapped each time
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before,
      huge_pages_status(), sep="|")
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
    assert kept_variable == "0" and kept_status.startswith(f"memory: large tensors on 4 KB pages ({VARIABLE}=0")
    assert faults_on_small_pages > 5 * 16_000
    assert faults < faults_on_small_pages / 20
