"""`run.json` and `network.txt`: what ran, on what, and how fast, for the run page (`cnn_zoo.reporting.run_page`).

No other file keeps these together: the config says what was asked, not which precision the trainer took,
which commit the code came from, how long each epoch took or how many samples a second it trained. The
callback writes them on rank zero into `trainer.default_root_dir` (the run folder) as the run goes, so an
interrupted run still has its record; a resumed run keeps the epochs it had and appends its own.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cnn_zoo.runtime.atomic import write_atomic
from cnn_zoo.runtime.faults import writing

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
NETWORK_FILE = "network.txt"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(folder: Path | None = None) -> str | None:
    """The commit of the checkout holding cnn_zoo (with `-dirty` for uncommitted changes), None outside one."""
    folder = folder or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if changed else head or None


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(trainer: L.Trainer) -> dict[str, Any]:
    """CPU, GPU (when the trainer runs on CUDA), precision and devices: what the timings depend on."""
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    gpus = []
    if accelerator == "cuda" and torch.cuda.is_available():
        gpus = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
    return {
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "gpu": ", ".join(gpus) or None,
        "accelerator": accelerator,
        "devices": trainer.num_devices,
        "world_size": trainer.world_size,
        "precision": str(trainer.precision),
        "platform": platform.platform(terse=True),
    }


def versions() -> dict[str, str]:
    import lightning

    import cnn_zoo

    return {"cnn_zoo": cnn_zoo.__version__, "torch": torch.__version__, "lightning": lightning.__version__}


def network_summary(pl_module: L.LightningModule) -> str:
    """Lightning's summary of the network's layers (shapes from `example_input_array`), without the metrics."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    summary = ModelSummary(pl_module, max_depth=-1)
    summary._layer_summary = {k: v for k, v in summary._layer_summary.items() if k.split(".")[0] == "net"}
    return str(summary)


class RunRecord(L.Callback):
    """Writes `run.json` (start, end, versions, commit, machine, per-epoch seconds and samples/s, test time) and
    `network.txt` (the layer summary) into the run folder."""

    def __init__(self, command: str | None = None, tested: str | None = None) -> None:
        self.command = command
        self.tested = tested  # what a test of a module passed in directly (evaluate) ran on: its checkpoint
        self.record: dict[str, Any] = {}
        self.folder: Path | None = None
        self.clock: dict[str, float] = {}
        self.batches_at_start = 0
        self.before = 0.0

    # ----------------------------------------------------------------- file
    def write(self) -> None:
        if self.folder is None:
            return
        text = json.dumps(self.record, indent=2) + "\n"
        with writing(self.folder / RUN_FILE, len(text.encode())):  # a full disk: one line (cnn_zoo.runtime.faults)
            write_atomic(self.folder / RUN_FILE, text)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero or self.folder is not None:
            return
        self.folder = Path(trainer.default_root_dir)
        previous = self.folder / RUN_FILE
        if previous.is_file():  # a resumed run (or evaluate after fit in one process): keep what is there
            try:
                self.record = json.loads(previous.read_text())
            except (OSError, json.JSONDecodeError):
                self.record = {}
        started = now_iso()
        self.before = float(self.record.get("duration_seconds", 0.0))  # the earlier sessions of a resumed run
        if "started" in self.record:
            self.record.setdefault("resumed", []).append(started)
        else:
            self.record["started"] = started
        self.record.setdefault("command", self.command or ("train" if stage == "fit" else stage))
        self.record.update(versions=versions(), git_commit=git_commit(), machine=machine(trainer))
        self.clock["session"] = time.perf_counter()
        self.write()

    def write_network(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.folder is None or (self.folder / NETWORK_FILE).is_file():
            return
        try:
            (self.folder / NETWORK_FILE).write_text(network_summary(pl_module) + "\n")
        except Exception as err:  # a summary must never fail a run; the page then shows none
            log.warning("network summary not written: %s", err)

    # ----------------------------------------------------------------- training
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_network(trainer, pl_module)
        self.clock["fit"] = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock["epoch"] = time.perf_counter()
        self.clock["validation_total"] = 0.0
        self.batches_at_start = trainer.fit_loop.epoch_loop.batch_progress.total.completed

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.folder is None or "epoch" not in self.clock:
            return
        seconds = time.perf_counter() - self.clock["epoch"]
        validation = self.clock.get("validation_total", 0.0)  # Lightning validates inside the training epoch
        batches = trainer.fit_loop.epoch_loop.batch_progress.total.completed - self.batches_at_start
        samples = self.samples(trainer, batches)
        epoch = {
            "epoch": trainer.current_epoch + 1,
            "seconds": round(seconds, 3),
            "validation_seconds": round(validation, 3),
            "batches": batches,
        }
        if samples:  # training samples per second of training (the validation's time left out)
            rate = samples / max(seconds - validation, 1e-9)
            epoch |= {"samples": samples, "samples_per_second": round(rate, 1)}
        epochs = [e for e in self.record.get("epochs", []) if e.get("epoch") != epoch["epoch"]]
        self.record["epochs"] = [*epochs, epoch]
        self.write()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.clock["validation"] = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "validation" in self.clock:
            spent = time.perf_counter() - self.clock.pop("validation")
            self.clock["validation_total"] = self.clock.get("validation_total", 0.0) + spent

    @staticmethod
    def samples(trainer: L.Trainer, batches: int) -> int | None:
        """Training samples in `batches` batches on every rank: whole batches, the epoch's last one cut to the set."""
        datamodule = getattr(trainer, "datamodule", None)
        batch_size = getattr(datamodule, "batch_size", None)
        if not batch_size:
            return None
        samples = batches * int(batch_size) * trainer.world_size
        train_set = getattr(datamodule, "train_set", None)
        try:
            return min(samples, len(train_set)) if train_set is not None else samples
        except TypeError:  # an iterable dataset has no length
            return samples

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.folder is not None and "fit" in self.clock:
            self.record["fit_seconds"] = round(time.perf_counter() - self.clock.pop("fit"), 3)
            self.write()

    # ----------------------------------------------------------------- test
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write_network(trainer, pl_module)
        self.clock["test"] = time.perf_counter()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.folder is not None and "test" in self.clock:
            self.record["test_seconds"] = round(time.perf_counter() - self.clock.pop("test"), 3)
            tested = Path(trainer.ckpt_path).name if trainer.ckpt_path else self.tested
            self.record["tested"] = tested or "final weights"
            self.write()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.folder is None:
            return
        self.record["finished"] = now_iso()
        self.record["duration_seconds"] = round(self.before + time.perf_counter() - self.clock["session"], 3)
        self.write()
