"""Per-batch hooks that do nothing are taken out of Lightning's dispatch; the ones that do something still run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LambdaCallback, ModelCheckpoint

from cnn_zoo.runtime.hook_dispatch import BATCH_HOOKS, idle_batch_hooks
from cnn_zoo.train import train
from tests.test_train import mnist_overrides


class StepCounter(L.Callback):
    """Counts the training steps it sees and keeps the trainer, to look at its callbacks afterwards."""

    def __init__(self) -> None:
        self.batch_ends = 0
        self.backwards = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trainer = trainer

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Any) -> None:
        self.backwards += 1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.batch_ends += 1


def test_only_the_hooks_a_callback_leaves_as_lightnings_no_op_are_idle() -> None:
    assert idle_batch_hooks(StepCounter()) == [
        hook for hook in BATCH_HOOKS if hook not in {"on_before_backward", "on_train_batch_end"}
    ]
    assert idle_batch_hooks(L.Callback()) == list(BATCH_HOOKS)


def test_a_hook_given_to_the_instance_is_not_idle() -> None:
    lambdas = LambdaCallback(on_before_zero_grad=lambda *args: None)
    assert "on_before_zero_grad" not in idle_batch_hooks(lambdas)


def test_a_checkpoint_that_saves_at_steps_keeps_its_batch_end(tmp_path: Path) -> None:
    assert "on_train_batch_end" in idle_batch_hooks(ModelCheckpoint(dirpath=tmp_path, monitor="val/acc"))
    by_steps = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2)
    by_time = ModelCheckpoint(dirpath=tmp_path, train_time_interval=timedelta(minutes=5))
    assert "on_train_batch_end" not in idle_batch_hooks(by_steps)
    assert "on_train_batch_end" not in idle_batch_hooks(by_time)


def test_a_run_skips_idle_hooks_and_still_calls_and_saves_at_every_step(compose_cfg, mnist_root: Path) -> None:
    cfg = compose_cfg(*mnist_overrides(mnist_root, "trainer.max_epochs=1", "logger=none"))
    counter = StepCounter()
    step_saves = ModelCheckpoint(dirpath=Path(cfg.paths.output_dir) / "steps", every_n_train_steps=2, save_top_k=-1)
    train(cfg, [counter, step_saves])

    steps = counter.trainer.global_step
    assert steps > 2
    assert counter.batch_ends == steps and counter.backwards == steps
    assert counter.on_before_zero_grad is None and counter.on_validation_batch_end is None
    monitoring = next(c for c in counter.trainer.checkpoint_callbacks if c is not step_saves)
    assert monitoring.on_train_batch_end is None
    assert len(list((Path(cfg.paths.output_dir) / "steps").glob("*.ckpt"))) == steps // 2
