"""Run-time tuning (`cnn_zoo.runtime.performance`): the `fast` switch's hardware detection, OpenMP's waiting chosen as
torch is first imported (its hook), denormals flushed, the CUDA check without devices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cnn_zoo.cli.config import config_dir
from cnn_zoo.runtime import performance
from cnn_zoo.runtime.errors import CnnZooError


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"avx2", "avx512_bf16"}, True), ({"avx2", "amx_bf16", "amx_tile"}, True), ({"avx2", "avx512f"}, False)],
)
def test_bf16_cpus_are_recognised_by_their_flags(flags: set[str], expected: bool) -> None:
    assert performance.cpu_has_bf16(flags) is expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    assert performance.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert performance.cpu_flags(tmp_path / "absent") == set()


def test_fast_auto_follows_the_detected_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(performance, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert performance.fast_precision("auto", "cpu") == "bf16-mixed"
    assert performance.fast_channels_last("auto", "cpu") is True
    monkeypatch.setattr(performance, "cpu_flags", lambda: {"avx2"})
    assert performance.fast_precision("auto", "cpu") == "32-true"
    assert performance.fast_channels_last("auto", "cpu") is True  # NHWC is faster on CPU in float32 too
    assert performance.fast_channels_last("false", "gpu") is False  # on GPUs it goes with 16-bit precision
    assert performance.fast_channels_last("true", "gpu") is True
    assert performance.fast_precision(True, "cpu") == "bf16-mixed"
    assert performance.fast_precision("false", "cpu") == "32-true"
    with pytest.raises(CnnZooError, match="fast must be one of auto, true, false"):
        performance.fast_precision("yes", "cpu")


def test_the_fast_switch_sets_precision_and_memory_layout_in_the_config(compose_cfg) -> None:
    fast = compose_cfg("fast=true", "trainer.accelerator=cpu")
    assert fast.trainer.precision == "bf16-mixed" and fast.model.channels_last is True
    plain = compose_cfg("fast=false", "model=small_cnn", "data=catsdogs", "trainer.accelerator=cpu")
    assert plain.trainer.precision == "32-true" and plain.model.channels_last is True
    gpu = compose_cfg("fast=false", "model=small_cnn", "data=catsdogs", "trainer.accelerator=gpu")
    assert gpu.trainer.precision == "32-true" and gpu.model.channels_last is False
    explicit = compose_cfg("fast=true", "trainer.precision=32-true", "model.channels_last=false")
    assert explicit.trainer.precision == "32-true" and explicit.model.channels_last is False
    # evaluate takes train's precision, so a checkpoint's evaluation repeats its training run's test figures
    assert compose_cfg("fast=true", config_name="evaluate").trainer.precision == "bf16-mixed"
    assert compose_cfg("fast=false", config_name="evaluate").trainer.precision == "32-true"
    assert compose_cfg(config_name="evaluate").fast == compose_cfg().fast == "auto"


def write_cpu_times(path: Path, idle: int, total: int) -> None:
    busy = total - idle
    path.write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {busy} 0 0 {idle} 0 0 0 0 0 0\n")


def test_idle_share_is_read_from_two_samples_of_proc_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    write_cpu_times(stat, idle=1000, total=2000)
    monkeypatch.setattr(performance.time, "sleep", lambda _: write_cpu_times(stat, idle=1015, total=2020))
    monkeypatch.setattr(performance, "own_cpu_ticks", lambda: 0.0)  # a busy machine: our own ticks are counted apart
    assert performance.idle_share(stat) == pytest.approx(0.75)
    assert performance.idle_share(tmp_path / "absent") is None


def test_openmp_threads_spin_on_idle_cores_briefly_beside_loader_workers_and_sleep_on_busy_ones() -> None:
    idle = performance.openmp_settings({}, idle=0.97)
    assert idle.settings == {"GOMP_SPINCOUNT": "300000"} and "97% of the cores idle" in str(idle)
    assert "no DataLoader workers" in str(idle)
    beside_workers = performance.openmp_settings({}, idle=0.97, loader_workers=2)
    assert beside_workers.settings == {"GOMP_SPINCOUNT": "10000"} and "2 DataLoader workers" in str(beside_workers)
    assert performance.openmp_settings({}, idle=0.4, loader_workers=2).settings == {"OMP_WAIT_POLICY": "PASSIVE"}
    busy = performance.openmp_settings({}, idle=0.4)
    assert busy.settings == {"OMP_WAIT_POLICY": "PASSIVE"} and "sleep while waiting" in str(busy)
    assert performance.openmp_settings({}, idle=None).settings == {}
    mine = performance.openmp_settings({"OMP_WAIT_POLICY": "ACTIVE"}, idle=0.97)
    assert mine.settings == {} and str(mine) == "OpenMP waiting: left as they were (set by you)"
    parent = performance.openmp_settings({"CNN_ZOO_OPENMP_CHOICE": "GOMP_SPINCOUNT=10000 (idle)"}, idle=0.1)
    assert parent.settings == {} and "the parent process chose GOMP_SPINCOUNT=10000 (idle)" in str(parent)


def test_the_expected_loader_workers_decide_the_choice_made_at_torchs_import(monkeypatch: pytest.MonkeyPatch) -> None:
    unset = (*performance.OPENMP_SETTINGS, performance.CHOICE_VARIABLE)
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    monkeypatch.setattr(performance.os, "environ", environ)
    monkeypatch.setattr(performance, "openmp_choice", performance.openmp_choice)
    monkeypatch.setattr(performance, "expected_loader_workers", 0)
    performance.expect_loader_workers(3)
    performance.choose_openmp_settings(0.95)
    assert environ["GOMP_SPINCOUNT"] == "10000" and "3 DataLoader workers" in environ[performance.CHOICE_VARIABLE]
    del environ["GOMP_SPINCOUNT"], environ[performance.CHOICE_VARIABLE]
    performance.expect_loader_workers(0)
    performance.choose_openmp_settings(0.95)
    assert environ["GOMP_SPINCOUNT"] == "300000"


def test_hydras_callbacks_load_no_torch_so_train_tells_openmp_its_workers_first() -> None:
    """Hydra builds its callbacks before `train` runs; torch loading there would make the choice without the config."""
    hydra_conf = OmegaConf.load(config_dir() / "hydra" / "default.yaml")
    modules = sorted({str(c["_target_"]).rpartition(".")[0] for c in hydra_conf.callbacks.values()})
    assert "cnn_zoo.search.job_cleanup" in modules
    code = f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_entry_points_choice_keeps_the_users_openmp_setting() -> None:
    code = (
        "import os; from cnn_zoo.runtime import performance; performance.set_openmp_defaults(); import torch; "
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    )
    unset = (*performance.OPENMP_SETTINGS, performance.CHOICE_VARIABLE)
    env = {k: v for k, v in os.environ.items() if k not in unset}
    mine = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert mine.stdout.split() == ["ACTIVE", "None"]
    chosen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert chosen.stdout.split() in (["None", "300000"], ["PASSIVE", "None"])
    off = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "CNN_ZOO_TUNE_OPENMP": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert off.stdout.split() == ["None", "None"]


def test_the_openmp_choice_is_made_as_torch_is_first_imported_and_not_before() -> None:
    """The look at the cores' load runs while the process imports and composes, not in a 0.1 s pause of its own."""
    code = (
        "import os, sys\n"
        "from cnn_zoo.runtime import performance\n"
        "performance.set_openmp_defaults()\n"
        "hook = lambda: any(isinstance(f, performance.ChooseOpenMPBeforeTorch) and not f.done for f in sys.meta_path)\n"
        "print(os.environ.get('CNN_ZOO_OPENMP_CHOICE'), hook(), performance.openmp_choice.reason)\n"
        "import torch\n"
        "print(bool(os.environ.get('CNN_ZOO_OPENMP_CHOICE')), hook(), performance.openmp_choice.reason)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (*performance.OPENMP_SETTINGS, performance.CHOICE_VARIABLE)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    before, after = out.stdout.splitlines()
    assert before == "None True to be chosen when torch is imported"
    assert after.startswith("True False ") and "of the cores idle at start" in after


def test_the_load_seen_leaves_out_this_processs_own_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy ticks of our own (importing, composing the config) are not a neighbour's load."""
    stat = tmp_path / "stat"
    write_cpu_times(stat, idle=1000, total=2000)
    ticks = iter([500.0, 530.0])
    monkeypatch.setattr(performance, "own_cpu_ticks", lambda: next(ticks))
    sample = performance.LoadSample.start(stat)
    write_cpu_times(stat, idle=1070, total=2100)  # 100 ticks on all cores: 70 idle, 30 of them ours
    assert sample.idle_share_of_others() == pytest.approx(1.0)
    ticks = iter([500.0, 500.0])
    sample = performance.LoadSample.start(stat)
    write_cpu_times(stat, idle=1130, total=2200)  # 100 ticks: 60 idle, 40 another process's
    assert sample.idle_share_of_others() == pytest.approx(0.6)
    ticks = iter([0.0])
    assert performance.LoadSample.start(tmp_path / "absent").idle_share_of_others() is None


@pytest.mark.parametrize("enabled", [True, False])
def test_denormals_are_flushed_in_every_thread_that_starts_afterwards(enabled: bool) -> None:
    """Denormal inputs count as zero (DAZ) in the OpenMP threads too, when set before torch's first parallel op."""
    code = (
        "from cnn_zoo.runtime import performance; import torch; torch.set_num_threads(2)\n"
        f"print(performance.flush_denormals({enabled}))\n"
        "x = torch.full((4_000_000,), 1e-39)\n"  # large enough for every thread to take a share
        "print(float((x * 3.0).sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    if enabled:
        assert out == ["denormal floats: flushed to zero (FTZ/DAZ)", "0.0"]
    else:
        assert out[0] == "denormal floats: kept (flush_denormal=false)" and float(out[1]) > 1e-32


def test_without_cuda_devices_availability_is_asked_of_the_runtime_not_nvml() -> None:
    """Lightning's NVML check searches the library path at every optimizer step where there is no driver."""
    code = (
        "import os, lightning, torch; from cnn_zoo.runtime import performance\n"
        "print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'), torch.cuda.is_available())\n"
        "print(performance.cuda_check_by_runtime_without_devices())\n"
        "print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'), torch.cuda.is_available())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("1 ")  # what Lightning sets at import
    if out[0] == "1 True" or not torch.backends.cuda.is_built():  # a device, or no CUDA at all: left as it was
        assert out[1:] == ["None", out[0]]
    else:
        assert out[1:] == ["CUDA: no device found through NVML; availability is asked of the CUDA runtime from now on",
                           "0 False"]  # fmt: skip
