"""Shared fixtures: generated data folders and Hydra configs composed as the entry points compose them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from cnn_zoo.config import compose_train_config
from tests.fixtures import make_mnist

REAL_DATA = Path(os.environ.get("CNN_ZOO_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))

# Settings that keep a test run small and quiet; tests add their own on top.
FAST = [
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "+trainer.enable_progress_bar=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mnist(tmp_path_factory.mktemp("mnist_data"))


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose `conf/train.yaml` with overrides, its run folder under tmp_path, as `@hydra.main` would."""

    def make(*overrides: str, config_name: str = "train") -> DictConfig:
        cfg = compose_train_config(list(overrides), tmp_path / "run", config_name=config_name)
        with open_dict(cfg):
            cfg.paths.cache_dir = str(tmp_path / "cache")
        return cfg

    yield make
    GlobalHydra.instance().clear()


def require_real(*parts: str) -> Path:
    """Path inside the real data folder, or skip the test when it is absent."""
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set CNN_ZOO_DATA_DIR)")
    return path
