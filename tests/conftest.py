"""Shared fixtures: generated data folders, Hydra configs composed as the entry points compose them, and commands
run in a process of their own as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from cnn_zoo.cli.config import compose_train_config
from tests.fixtures import make_mnist

REAL_DATA = Path(os.environ.get("CNN_ZOO_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))

SRC = Path(__file__).resolve().parents[1] / "src"
# Settings that keep a test run quiet (QUIET) and small (FAST); tests add their own on top.
QUIET = [
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "+trainer.enable_progress_bar=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]
FAST = ["trainer.max_epochs=2", *QUIET]


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



def run_command(
    module: str,
    *args: str,
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` (e.g. `cnn_zoo.train`) with this checkout's src/ first on the path, the data
    folder in CNN_ZOO_DATA_DIR when given and `env` on top of the environment; output captured as text."""
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    if data_dir is not None:
        full["CNN_ZOO_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=timeout
    )
