"""Every option of every config group composes, and the entry point answers Hydra's own flags."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cnn_zoo.cli.config import CONFIG_DIR
from tests.conftest import run_command

GROUPS = [
    "data",
    "model",
    "optimizer",
    "scheduler",
    "augmentation",
    "tta",
    "trainer",
    "callbacks",
    "logger",
    "experiment",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("override", [f"{g}={o}" for g in GROUPS for o in options(g)])
def test_every_group_option_composes(compose_cfg, override: str) -> None:
    cfg = compose_cfg(override)
    assert cfg.data._target_.startswith("cnn_zoo.data.")
    assert cfg.model.net._target_.startswith("cnn_zoo.models.")
    assert cfg.optimizer._partial_ is True


def test_optimizer_is_a_partial(compose_cfg) -> None:
    import hydra.utils
    import torch

    cfg = compose_cfg("optimizer=sgd", "optimizer.lr=0.05")
    optimizer = hydra.utils.instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_command("cnn_zoo.train", *args)


def test_misspelt_option_gets_hydras_message() -> None:
    result = run_cli("model=lenett", "--cfg", "job")
    assert result.returncode != 0
    assert "Could not find 'model/lenett'" in result.stderr
    assert "lenet" in result.stderr  # the available options are listed


def test_help_lists_the_groups() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for group in ("data:", "model:", "optimizer:", "scheduler:", "trainer:"):
        assert group in result.stdout


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_each_optimizer_config_steps_as_the_single_tensor_loop(compose_cfg, name: str) -> None:
    """The configs ask for torch's fused kernels where torch has them; the steps stay those of the plain loop."""
    import hydra.utils
    import torch

    cfg = compose_cfg(f"optimizer={name}")
    results = []
    single_tensor = {"foreach": False} | ({"fused": None} if name != "rmsprop" else {})
    for overrides in ({}, single_tensor):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(30, 20)), torch.nn.Parameter(torch.randn(20))]
        optimizer = hydra.utils.instantiate(cfg.optimizer, **overrides)(params)
        for step in range(5):
            for param in params:
                param.grad = torch.full_like(param, 0.1 * (step - 2))
            optimizer.step()
        results.append((optimizer, [param.detach().clone() for param in params]))
    (configured, configured_params), (_, loop_params) = results
    assert bool(configured.defaults.get("fused")) is (name != "rmsprop")  # RMSprop has no fused kernel in torch
    for got, expected in zip(configured_params, loop_params, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
