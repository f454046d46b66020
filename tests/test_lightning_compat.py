"""Every private Lightning behaviour cnn_zoo relies on (`cnn_zoo.runtime.lightning_compat`), checked against the
installed Lightning by name: an upgrade that changes one fails here, not in a user's run."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.trainer.call import _call_callback_hooks
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnn_zoo.callbacks.checkpointing import LatestCheckpoint
from cnn_zoo.runtime import lightning_compat as compat

ROOT = Path(__file__).resolve().parents[1]
QUIET = {
    "accelerator": "cpu",
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
}


class Tiny(L.LightningModule):
    """A linear network beside a parameter-free metric-like module; it records Lightning's hook name per step."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 2))
        self.tally = nn.Identity()
        self.hook_names: list[Any] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.hook_names.append(vars(self).get(compat.HOOK_NAME_ATTRIBUTE))
        return self.net(batch[0]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(batches: int = 3) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(2 * batches, 3)), batch_size=2)


class SavesLogger(Logger):
    """A logger that only records the checkpoint callbacks it is told about."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[Any] = []

    name = "saves"
    version = 0

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        pass

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.saved.append(checkpoint_callback)


def test_the_installed_lightning_is_the_tested_minor_and_the_pin_stops_at_the_next() -> None:
    installed = re.match(r"(\d+)\.(\d+)", L.__version__)
    assert installed and f"{installed[1]}.{installed[2]}" == compat.TESTED_LIGHTNING, (
        f"lightning {L.__version__} is installed, cnn_zoo.runtime.lightning_compat was tested with "
        f"{compat.TESTED_LIGHTNING}: "
        "run this file, adapt the seam, then update TESTED_LIGHTNING and the pin in pyproject.toml"
    )
    (pin,) = re.findall(r'^\s*"(lightning[^"]*)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    major, minor = compat.TESTED_LIGHTNING.split(".")
    assert pin.endswith(f",<{major}.{int(minor) + 1}"), pin


def test_the_script_launcher_starts_children_through_call_children_scripts() -> None:
    started: list[int] = []

    class Recording(compat.ScriptLauncher):
        def start_children(self) -> None:
            self.check_can_spawn_children()
            started.append(self.num_processes)

    launcher = Recording(LightningEnvironment(), num_processes=2, num_nodes=1)
    assert launcher.launch(lambda value: value * 2, 21) == 42
    assert started == [2]
    launcher.procs = [object()]  # Lightning's refusal to start children twice
    with pytest.raises(RuntimeError, match="only create subprocesses once"):
        launcher.check_can_spawn_children()


def test_a_ddp_strategy_chooses_its_launcher_where_lightning_builds_it() -> None:
    offered: list[Any] = []

    class Choosing(compat.LauncherChoosingDDPStrategy):
        def choose_launcher(self, launcher: Any) -> Any:
            offered.append(launcher)
            return "chosen"

    trainer = L.Trainer(strategy=Choosing(), devices=2, **QUIET)
    assert [type(launcher) for launcher in offered] == [compat.SubprocessScriptLauncher]
    assert trainer.strategy.launcher == "chosen"


def test_ddp_find_unused_parameters_reads_the_strategys_ddp_arguments() -> None:
    assert compat.ddp_find_unused_parameters(DDPStrategy(find_unused_parameters=True))
    assert not compat.ddp_find_unused_parameters(DDPStrategy())
    assert not compat.ddp_find_unused_parameters(SingleDeviceStrategy(device=torch.device("cpu")))


def test_the_model_summary_rows_are_the_layers_keep_layer_keeps() -> None:
    rows: list[list[str]] = []

    class Filtered(compat.FilteredModelSummary):
        def keep_layer(self, name: str) -> bool:
            return name.split(".")[0] == "net"

        @staticmethod
        def summarize(summary_data: list[tuple[str, list[str]]], *args: Any, **kwargs: Any) -> None:
            rows.append(dict(summary_data)["Name"])

    Filtered(max_depth=2).on_fit_start(L.Trainer(**QUIET), Tiny())
    assert rows == [["net", "net.0"]]  # no `tally`


def test_the_latest_checkpoint_keeps_the_state_key_its_old_checkpoints_hold(tmp_path: Path) -> None:
    callback = LatestCheckpoint(dirpath=str(tmp_path))
    assert callback.state_key == "LatestCheckpoint{'latest': True}"
    assert compat.checkpoint_state_key(L.Callback(), a=1) == "Callback{'a': 1}"


def test_saves_at_train_steps_reads_the_checkpoints_triggers(tmp_path: Path) -> None:
    assert not compat.saves_at_train_steps(ModelCheckpoint(dirpath=tmp_path, monitor="val/acc"))
    assert compat.saves_at_train_steps(ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2))
    assert compat.saves_at_train_steps(ModelCheckpoint(dirpath=tmp_path, train_time_interval=timedelta(minutes=5)))


def test_a_hook_removed_from_an_instance_is_skipped_by_the_dispatch() -> None:
    calls: list[str] = []

    class Both(L.Callback):
        def on_before_zero_grad(self, *args: Any) -> None:
            calls.append("zero_grad")

        def on_train_batch_start(self, *args: Any) -> None:
            calls.append("batch_start")

    callback = Both()
    trainer = L.Trainer(callbacks=[callback], **QUIET)
    compat.remove_hook(callback, "on_before_zero_grad")
    _call_callback_hooks(trainer, "on_before_zero_grad", None)
    _call_callback_hooks(trainer, "on_train_batch_start", None, 0)
    assert calls == ["batch_start"]
    assert callable(Both().on_before_zero_grad)  # only that instance lost it


def test_a_fit_sets_the_hook_name_counts_batches_and_saves_as_model_checkpoint_does(tmp_path: Path) -> None:
    positions: list[int] = []
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_top_k=0)

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
            positions.append(compat.batches_processed_in_epoch(trainer))

        def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            compat.save_checkpoint_now(checkpoint, trainer, str(tmp_path / "now.ckpt"))

    logger = SavesLogger()
    model = Tiny()
    options = {**QUIET, "logger": logger, "enable_checkpointing": True}
    trainer = L.Trainer(max_epochs=1, callbacks=[Probe(), checkpoint], limit_val_batches=0, **options)
    trainer.fit(model, loader(3))
    assert model.hook_names == ["training_step"] * 3  # set as a plain attribute, under that name
    assert positions == [1, 2, 3]  # during on_train_batch_end the current batch counts as processed
    assert (tmp_path / "now.ckpt").is_file()
    assert checkpoint._last_global_step_saved == trainer.global_step == 3  # the same step is not saved again
    assert [c.dirpath for c in logger.saved] == [checkpoint.dirpath]  # the loggers were told


def test_the_progress_bar_label_is_made_in_get_train_description() -> None:
    """`EpochLabelledProgressBar.epoch_label` sees the label Lightning made, counted from 0, and replaces it."""

    from cnn_zoo.runtime.lightning_compat import EpochLabelledProgressBar

    seen = []

    class Recording(EpochLabelledProgressBar):
        def epoch_label(self, current_epoch: int, lightning_label: str) -> str:
            seen.append((current_epoch, lightning_label.strip()))
            return "mine"

    bar = Recording()
    bar._trainer = SimpleNamespace(max_epochs=10)
    assert bar._get_train_description(3) == "mine" and seen == [(3, "Epoch 3/9")]


def test_spike_detection_decides_through_its_three_private_methods(tmp_path: Path) -> None:
    """Lightning's `on_train_batch_end` asks `_is_spike`, learns with `_update_stats`, acts with `_handle_spike`."""
    import torch

    from cnn_zoo.runtime.lightning_compat import SpikeDetectionHooks

    calls = []

    class Recording(SpikeDetectionHooks):
        def is_spike(self, loss):
            calls.append("is_spike")
            return float(loss) > 100

        def update_stats(self, val):
            calls.append("update_stats")

        def handle_spike(self, trainer, batch_idx):
            calls.append("handle_spike")

    detector = Recording(mode="min", window=2, warmup=0, finite_only=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path)
    for loss in (1.0, 1000.0):
        detector.on_train_batch_end(trainer, None, torch.tensor(loss), None, 0)
    assert calls == ["is_spike", "update_stats", "is_spike", "handle_spike"]


def test_the_cluster_environment_is_the_accelerator_connectors(tmp_path: Path) -> None:
    from lightning.fabric.plugins.environments import LightningEnvironment

    from cnn_zoo.runtime.lightning_compat import cluster_environment

    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path)
    assert isinstance(cluster_environment(trainer), LightningEnvironment)


def test_the_lr_finder_runs_without_its_bar_inside_the_block_only(tmp_path: Path, capfd) -> None:
    from lightning.pytorch.tuner import Tuner, lr_finder

    original = lr_finder.tqdm

    def find() -> str:
        trainer = L.Trainer(max_epochs=2, default_root_dir=tmp_path, **QUIET)
        Tuner(trainer).lr_find(Tiny(), train_dataloaders=loader(6), num_training=5, early_stop_threshold=None,
                                update_attr=False)  # fmt: skip
        return capfd.readouterr().err

    bar = re.compile(r"Finding best initial lr: +\d+%")  # tqdm's line, not a traceback quoting this file
    with compat.lr_finder_without_bar():
        assert not bar.search(find())
    assert lr_finder.tqdm is original and bar.search(find())
