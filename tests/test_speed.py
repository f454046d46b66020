"""The speed work: batch-indexed tensor loaders, the `fast` switch's detection, epoch log lines, bench helpers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from scripts.bench_common import ProcessRun, reported, run_process, zoo_stamps
from torch.utils.data import DataLoader, TensorDataset, random_split

from cnn_zoo import performance
from cnn_zoo.config import config_dir
from cnn_zoo.data.batches import CompactImages, TensorBatches, stacked, tensor_batches
from cnn_zoo.data.mnist import PixelScaling
from cnn_zoo.errors import CnnZooError
from cnn_zoo.training_progress import EpochLog, epoch_line, progress_bar


def batches(loader: DataLoader) -> list[list[torch.Tensor]]:
    return [list(batch) for batch in loader]


def test_batch_indexed_loader_yields_the_batches_of_the_per_sample_loader() -> None:
    x, y = torch.randn(103, 1, 4, 4), torch.arange(103)
    train, _ = random_split(TensorDataset(x, y), [83, 20], generator=torch.Generator().manual_seed(0))
    batched = tensor_batches(train)
    assert isinstance(batched, TensorBatches) and len(batched) == 83
    torch.manual_seed(1)
    expected = batches(DataLoader(train, batch_size=16, shuffle=True))
    torch.manual_seed(1)
    got = batches(DataLoader(batched, batch_size=16, shuffle=True, collate_fn=stacked))
    assert len(got) == len(expected) == 6
    for (gx, gy), (ex, ey) in zip(got, expected, strict=True):
        assert torch.equal(gx, ex) and torch.equal(gy, ey)
    assert [len(b[1]) for b in got][-1] == 83 - 5 * 16
    assert tensor_batches(list(range(3))) is None  # other datasets keep the per-sample path


def test_datamodule_loader_serves_mnist_whole_batches(compose_cfg, mnist_root: Path) -> None:
    from cnn_zoo.pipeline import build_datamodule

    cfg = compose_cfg(f"paths.data_dir={mnist_root}", "data.download=false", "data.val_size=60", "data.batch_size=32")
    datamodule = build_datamodule(cfg)
    loader = datamodule.train_dataloader()
    assert isinstance(loader.dataset, TensorBatches)
    x, y = next(iter(loader))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (32,) and y.dtype == torch.int64
    assert sum(len(b[1]) for b in datamodule.val_dataloader()) == 60


def test_compact_images_serve_batches_and_samples_through_their_transform() -> None:
    pixels, labels = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8), torch.arange(40)
    dataset = CompactImages(pixels, labels, transform=PixelScaling(0.5, 0.25))
    train, _ = random_split(dataset, [30, 10], generator=torch.Generator().manual_seed(0))
    batched = tensor_batches(train)
    assert isinstance(batched, TensorBatches)
    x, y = batched.__getitems__([0, 5, 7])
    rows = torch.as_tensor(train.indices)[[0, 5, 7]]
    assert x.dtype == torch.float32 and torch.equal(y, labels[rows])
    assert torch.allclose(x, (pixels[rows].float() / 255 - 0.5) / 0.25)
    sample, label = dataset[3]
    assert sample.dtype == torch.float32 and sample.shape == (1, 4, 4) and int(label) == 3


def test_mnist_keeps_uint8_digits_and_serves_the_values_of_normalising_the_whole_set(mnist_root: Path) -> None:
    from torchvision.datasets import MNIST

    from cnn_zoo.data.mnist import MNIST_MEAN, MNIST_STD, MNISTDataModule

    datamodule = MNISTDataModule(data_dir=str(mnist_root), batch_size=16, val_size=60, download=False)
    datamodule.setup("fit")
    assert datamodule.train_set.dataset.tensors[0].dtype == torch.uint8  # a quarter of float32's memory
    # what the whole set normalised at once (the earlier way) holds, bit for bit
    whole = MNIST(str(mnist_root), train=True).data.float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1)
    x, y = next(iter(datamodule.val_dataloader()))
    assert x.dtype == torch.float32 and torch.equal(x, whole[datamodule.val_set.indices[:16]])
    test_whole = MNIST(str(mnist_root), train=False).data.float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
    sample, _ = datamodule.test_set[7]
    assert torch.equal(sample, test_whole[7].unsqueeze(0))


def test_idx_files_read_as_torchvision_reads_them_plain_or_gzipped(mnist_root: Path, tmp_path: Path) -> None:
    import gzip

    from torchvision.datasets import MNIST

    from cnn_zoo.data.mnist import RAW_FILES, MNISTDataModule, read_idx

    raw = mnist_root / "MNIST" / "raw"
    reference = MNIST(str(mnist_root), train=True)
    images = read_idx(raw / "train-images-idx3-ubyte")
    assert images.dtype == torch.uint8 and torch.equal(images, reference.data)
    assert torch.equal(read_idx(raw / "train-labels-idx1-ubyte").long(), reference.targets)
    zipped = tmp_path / "MNIST" / "raw"  # only the gzipped originals, as LeCun's site serves them
    zipped.mkdir(parents=True)
    for name in RAW_FILES:
        (zipped / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
    datamodule = MNISTDataModule(data_dir=str(tmp_path), val_size=60, download=False)
    datamodule.setup("fit")
    assert torch.equal(datamodule.train_set.dataset.tensors[0].squeeze(1), reference.data)
    subset = MNISTDataModule(data_dir=str(mnist_root), val_size=0, download=False, digits=[3, 7])
    subset.setup("fit")
    labels = subset.train_set.dataset.tensors[1]
    assert set(labels.tolist()) == {0, 1}
    assert len(labels) == int(torch.isin(reference.targets, torch.tensor([3, 7])).sum())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-5], "holds other than the 784 bytes"),
        (lambda data: data + b"x", "holds other than the 784 bytes"),
        (lambda data: b"\x00\x00\x0d\x03" + data[4:], "not an IDX file of unsigned bytes (it starts 00000d03)"),
        (lambda data: data[:6], "ends inside its header"),
        (lambda data: b"", "it starts empty"),
    ],
)
def test_a_damaged_idx_file_is_one_clear_error(tmp_path: Path, damage, message: str) -> None:
    from cnn_zoo.data.mnist import MNISTDataModule
    from tests.fixtures import make_mnist

    make_mnist(tmp_path, n_train=1, n_test=1)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CnnZooError, match="cannot read MNIST IDX files in .*Replace them with the original") as err:
        MNISTDataModule(data_dir=str(tmp_path), val_size=0, download=False).setup("fit")
    assert message in str(err.value)


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
    assert "cnn_zoo.job_cleanup" in modules
    code = f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_import_cnn_zoo_keeps_the_users_openmp_setting() -> None:
    code = "import os, cnn_zoo, torch; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
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


def test_the_openmp_choice_is_made_as_torch_is_first_imported_and_not_before() -> None:
    """The look at the cores' load runs while the process imports and composes, not in a 0.1 s pause of its own."""
    code = (
        "import os, sys, cnn_zoo\n"
        "from cnn_zoo import performance\n"
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
        "from cnn_zoo import performance; import torch; torch.set_num_threads(2)\n"
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
        "import os, lightning, torch; from cnn_zoo import performance\n"
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


def test_epoch_line_names_the_epoch_its_duration_and_epoch_values() -> None:
    metrics = {"train/loss_step": 9.0, "train/loss_epoch": torch.tensor(0.25), "val/acc": 0.9861, "test/acc": 1.0}
    assert epoch_line(2, 10, 12.345, 20.1, metrics) == "epoch 2/10 12.35s cpu=20.10s train/loss=0.2500 val/acc=0.9861"


def test_an_epochs_line_waits_for_the_modules_epoch_end_and_survives_a_crash(caplog) -> None:
    """Lightning runs the module's on_train_epoch_end (the training metrics) after the callbacks': the line comes
    at the next epoch's start, at the end of training, or when training fails."""
    metrics: dict[str, float] = {"val/acc": 0.5}
    trainer = SimpleNamespace(is_global_zero=True, sanity_checking=False, current_epoch=0, max_epochs=3,
                              callback_metrics=metrics)  # fmt: skip
    epoch_log = EpochLog()

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]

    with caplog.at_level(logging.INFO, logger="cnn_zoo.training_progress"):
        epoch_log.on_train_epoch_end(trainer, None)
        assert lines() == []
        metrics["train/acc"] = 0.25  # what the module logs after the callbacks' hook
        epoch_log.on_train_epoch_start(trainer, None)
        trainer.current_epoch = 1
        epoch_log.on_train_epoch_end(trainer, None)
        epoch_log.on_exception(trainer, None, RuntimeError("disk full"))
        epoch_log.on_train_end(trainer, None)  # nothing pending any more: no third line
    assert [line.split()[:2] for line in lines()] == [["epoch", "1/3"], ["epoch", "2/3"]]
    assert all("train/acc=0.2500" in line and "val/acc=0.5000" in line for line in lines())


def test_progress_bar_is_disabled_off_a_terminal_unless_forced() -> None:
    assert not sys.stdout.isatty()  # pytest captures stdout
    assert not progress_bar().is_enabled
    assert progress_bar(force=True).is_enabled and progress_bar(force=True).refresh_rate == 4


def test_a_run_off_a_terminal_logs_one_line_per_epoch_that_the_bench_reads(mnist_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(mnist_root)}
    args = [f"hydra.run.dir={run_dir}", "data.download=false", "data.val_size=60", "trainer.max_epochs=2"]
    log = tmp_path / "output.log"
    run = run_process([sys.executable, "-m", "cnn_zoo.train", *args], log, env)
    assert run.returncode == 0, log.read_text()[-3000:]
    lines = (run_dir / "train.log").read_text().splitlines()
    epochs = [line for line in lines if "][cnn_zoo.training_progress][INFO] - epoch " in line]
    assert [line.split(" - ")[1].split()[:2] for line in epochs] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert all("train/loss=" in line and "train/acc=" in line and "val/acc=" in line for line in epochs)
    assert "it/s" not in log.read_text() and "Trainable params" in log.read_text()  # a summary, no progress bar
    assert any("OpenMP waiting: " in line for line in lines)  # how the threads wait, and why, is in the log
    assert any("denormal floats: flushed to zero" in line for line in lines)
    zoo_stamps(run, run_dir / "train.log", run_dir / "metrics.json")
    assert len(run.epochs) == 2 and all(end > start and cpu > 0 for start, end, cpu in run.epochs)
    assert run.steady_epoch_cpu_s == run.epochs[1][2] and run.steady_epoch_s == run.epochs[1][1] - run.epochs[1][0]
    assert run.launched < run.first_step < run.epochs[0][1] < run.epochs[1][1] <= run.ended
    assert run.test_acc == json.loads((run_dir / "metrics.json").read_text())["test/acc"]
    assert run.max_rss_mb > 50 and run.cpu_s > 0


def test_child_reports_are_read_from_their_last_bench_line(tmp_path: Path) -> None:
    result = {"first_step": 5.0, "epochs": [[5.0, 7.0], [7.0, 8.5], [8.5, 10.5]], "test_acc": 0.75}
    code = f"print('noise'); print('BENCH ' + {json.dumps(json.dumps(result))})"
    run = run_process([sys.executable, "-c", code], tmp_path / "child.log")
    assert run.returncode == 0 and run.ended >= run.launched
    reported(run, (tmp_path / "child.log").read_text())
    assert run.test_acc == 0.75 and run.epoch_s == [2.0, 1.5, 2.0]
    assert run.steady_epoch_s == 1.75  # the first epoch's warm-up left out
    failed = run_process([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "failed.log")
    assert failed.returncode == 3 and reported(failed, "").epochs == []
    assert ProcessRun(0.0, 1.0, 0, 1.0, 1.0, epochs=[[0.0, 0.5]]).steady_epoch_s == 0.5
    with_cpu = ProcessRun(0.0, 1.0, 0, 1.0, 1.0, epochs=[[0.0, 0.5, 0.9], [0.5, 1.25, 0.7]])
    assert with_cpu.steady_epoch_cpu_s == 0.7 and with_cpu.epoch_s == [0.5, 0.75]


def test_a_child_run_records_the_time_the_hypervisor_stole_meanwhile(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  500 0 40 900 10 0 2 70 0 0\n")
    later = "cpu  900 0 60 950 10 0 3 320 0 0\n"  # 250 more ticks of steal while the child ran
    code = f"import time; time.sleep(0.6); open({str(stat)!r}, 'w').write({later!r}); time.sleep(0.6)"
    run = run_process([sys.executable, "-c", code], tmp_path / "c.log", stat=stat)
    assert run.returncode == 0 and run.steal_s == pytest.approx(250 / os.sysconf("SC_CLK_TCK"))
    assert len(run.steal) >= 3 and run.steal[0][1] == 0 and run.steal[-1][1] == pytest.approx(run.steal_s, abs=0.01)
    assert [t for t, _ in run.steal] == sorted(t for t, _ in run.steal) and run.cores == os.cpu_count()
    assert run_process([sys.executable, "-c", "pass"], tmp_path / "c.log", stat=tmp_path / "absent").steal_s is None
    assert performance.CpuTimes.read(stat) == performance.CpuTimes(idle=960, steal=320, total=2243)


def test_quiet_epochs_are_those_the_hypervisor_took_little_of() -> None:
    epochs = [[0.0, 5.0], [5.0, 10.0], [10.0, 20.0]]
    sampled = ProcessRun(0.0, 20.0, 0, 1.0, 1.0, epochs=epochs, steal=[[0.0, 0.0], [10.0, 0.1], [20.0, 4.1]], cores=2)
    assert sampled.steal_share(5.0, 10.0) == pytest.approx(0.05 / 10)  # half of the first 10 s's 0.1 core-seconds
    assert sampled.steal_share(10.0, 20.0) == pytest.approx(4.0 / 20)
    assert sampled.steady_epoch_s == 7.5 and sampled.quiet_epoch_s(0.02) == 5.0  # the stolen-from epoch left out
    assert sampled.quiet_epoch_s(0.001) is None
    averaged = ProcessRun(0.0, 20.0, 0, 1.0, 1.0, steal_s=2.0, epochs=epochs, cores=2)  # a total, no samples
    assert averaged.steal_share(10.0, 20.0) == pytest.approx(0.05) and averaged.quiet_epoch_s(0.06) == 7.5
    assert ProcessRun(0.0, 20.0, 0, 1.0, 1.0, epochs=epochs).quiet_epoch_s(1.0) is None  # steal unknown


def test_benchmark_rounds_reverse_the_order_every_other_round_unless_asked_not_to() -> None:
    from scripts.bench_common import way_order

    ways = ["zoo", "plain", "keras"]
    assert [way_order(ways, r) for r in range(3)] == [ways, ways[::-1], ways]
    assert [way_order(ways, r, counterbalance=False) for r in range(2)] == [ways, ways]
    assert ways == ["zoo", "plain", "keras"]  # the caller's list is left as it was
