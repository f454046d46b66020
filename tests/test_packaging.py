"""What an installed cnn_zoo relies on: its configs found, console scripts declared, a user's own config folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib

from cnn_zoo.cli import config
from cnn_zoo.runtime import config_values
from tests.conftest import QUIET, run_command

ROOT = Path(__file__).resolve().parents[1]


def test_config_dir_is_the_checkouts_conf_here_and_the_packaged_copy_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert config.config_dir() == ROOT / "conf"
    package = tmp_path / "site-packages" / "cnn_zoo"
    (package / "conf").mkdir(parents=True)
    monkeypatch.setattr(config, "__file__", str(package / "cli" / "config.py"))
    assert config.config_dir() == package / "conf"


def test_cache_dir_follows_the_environment_and_never_points_into_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNN_ZOO_CACHE_DIR", str(tmp_path / "mine"))
    assert config_values.user_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CNN_ZOO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config_values.user_cache_dir() == tmp_path / "xdg" / "cnn_zoo"


def test_every_console_script_names_a_main_that_exists() -> None:
    import importlib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"cnn-zoo-train", "cnn-zoo-evaluate", "cnn-zoo-predict", "cnn-zoo-report", "cnn-zoo-prepare"} <= set(scripts)
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_core_install_pins_no_optuna_stack_and_the_extras_pin_no_sqlalchemy() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("optuna", "sqlalchemy", "alembic", "scikit-learn"):
        assert name not in core, name
    extras = project["optional-dependencies"]
    assert extras["hpo"] == ["optuna>=4"]  # our own sweeper: no hydra-optuna-sweeper, no SQLAlchemy/alembic pins
    assert not any(dep.lower().startswith(("sqlalchemy", "alembic")) for deps in extras.values() for dep in deps)
    assert {"mlflow", "wandb", "postgres"} <= set(extras)
    assert project["license"] == "MIT" and (ROOT / "LICENSE").is_file()


def test_a_users_own_experiment_in_their_config_dir_composes_with_the_packages_groups_and_trains(
    mnist_root: Path, tmp_path: Path
) -> None:
    """`cnn-zoo-train --config-dir my_conf experiment=digits`, run from the user's folder outside the checkout."""
    experiment = tmp_path / "my_conf" / "experiment" / "digits.yaml"
    experiment.parent.mkdir(parents=True)
    experiment.write_text(
        "# @package _global_\n"
        "defaults:\n"
        "  - override /model: mnist_cnn\n"
        "  - override /optimizer: rmsprop\n"
        "data:\n"
        "  val_size: 60\n"
        "  batch_size: 32\n"
        "  download: false\n"
        "trainer:\n"
        "  max_epochs: 1\n"
    )
    args = ["--config-dir", str(tmp_path / "my_conf"), "experiment=digits", *QUIET, "trainer.max_epochs=1"]
    env = {"CNN_ZOO_CACHE_DIR": str(tmp_path / "cache")}
    result = run_command("cnn_zoo.train", *args, data_dir=mnist_root, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "runs").glob("*_mnist_mnist_cnn"))
    assert len(runs) == 1, "the run folder goes under the current folder's outputs/"
    resolved = (runs[0] / ".hydra" / "config.yaml").read_text()
    assert "RMSprop" in resolved and "max_epochs: 1" in resolved
    assert "test/acc" in json.loads((runs[0] / "metrics.json").read_text())
