"""The garbage collector paused during a command's start-up and resumed when its work starts."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest

from cnn_zoo.cli.hydra_entry import hydra_command
from cnn_zoo.runtime import startup_gc
from cnn_zoo.train import train
from tests.test_train import mnist_overrides


@pytest.fixture(autouse=True)
def collector_enabled_after() -> Iterator[None]:
    yield
    startup_gc.resume()
    gc.enable()


def test_a_pause_lasts_until_resume_which_freezes_what_startup_built() -> None:
    with startup_gc.paused_during_startup():
        assert not gc.isenabled() and startup_gc.paused()
        built_during_startup = [object() for _ in range(3)], {"a": [1]}
        frozen = gc.get_freeze_count()
        startup_gc.resume()
        assert gc.isenabled() and not startup_gc.paused()
        assert gc.get_freeze_count() > frozen  # the start-up objects moved to the permanent generation
        assert gc.is_tracked(built_during_startup)
    assert gc.isenabled()


def test_a_pause_ends_with_its_block_when_no_work_resumed_it() -> None:
    with pytest.raises(ValueError, match="start-up failed"), startup_gc.paused_during_startup():
        raise ValueError("start-up failed")
    assert gc.isenabled() and not startup_gc.paused()


def test_a_collector_the_caller_disabled_stays_disabled() -> None:
    gc.disable()
    with startup_gc.paused_during_startup():
        startup_gc.resume()
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_resume_without_a_pause_leaves_the_collector_alone() -> None:
    gc.disable()
    startup_gc.resume()
    assert not gc.isenabled()


def test_every_command_line_runs_its_start_up_paused() -> None:
    assert hydra_command(gc.isenabled) is False
    assert gc.isenabled()


def test_importing_the_zoo_as_a_library_leaves_the_collector_on() -> None:
    code = "import gc, cnn_zoo.train, cnn_zoo.training.pipeline, cnn_zoo.predict; print(gc.isenabled())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr[-2000:]


class CollectorState(L.Callback):
    def __init__(self) -> None:
        self.seen: dict[str, bool] = {}

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seen["sanity check"] = gc.isenabled()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.seen.setdefault("first training step", gc.isenabled())

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seen["test"] = gc.isenabled()


def test_training_resumes_collection_after_its_sanity_check(compose_cfg, mnist_root: Path) -> None:
    cfg = compose_cfg(*mnist_overrides(mnist_root, "trainer.max_epochs=1", "logger=none"))
    state = CollectorState()
    with startup_gc.paused_during_startup():
        train(cfg, [state])
        assert gc.isenabled()
    assert state.seen == {"sanity check": False, "first training step": True, "test": True}
