"""Every command's `--help` is its own: its name, every key of its config, examples; not train's groups."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cnn_zoo.cli.config import config_dir

HYDRA_COMMANDS = ("evaluate", "predict", "export", "explain")
TRAIN_ONLY_GROUPS = ("optimizer:", "scheduler:", "hparams_search:", "experiment:")


def help_of(command: str) -> str:
    script = Path(sys.executable).parent / f"cnn-zoo-{command}"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def own_keys(command: str) -> list[str]:
    """The top-level keys a user sets on the command line (Hydra's own and the composed groups aside)."""
    conf = OmegaConf.load(config_dir() / f"{command}.yaml")
    return [key for key in conf if key not in ("defaults", "hydra", "task_name", "paths")]


@pytest.mark.parametrize("command", HYDRA_COMMANDS)
def test_each_hydra_command_explains_itself_and_not_train(command: str) -> None:
    text = help_of(command)
    assert text.startswith(f"cnn-zoo-{command}: ")
    assert f"Usage: cnn-zoo-{command} " in text and "Examples" in text
    assert "cnn_zoo.train" not in text and "cnn-zoo-train" not in text
    for group in TRAIN_ONLY_GROUPS:
        assert f"\n{group}" not in text
    for key in own_keys(command):
        assert f"{key}=" in text, f"{command} --help does not explain {key}"


def test_train_help_lists_its_groups_and_examples() -> None:
    text = help_of("train")
    assert text.startswith("cnn-zoo-train: ") and "Usage: cnn-zoo-train " in text
    for group in ("data:", "model:", "optimizer:", "experiment:"):
        assert f"\n{group}" in text
    assert "resume=" in text and "Examples" in text


@pytest.mark.parametrize("command", ["report", "prepare"])
def test_the_argparse_commands_name_themselves(command: str) -> None:
    text = help_of(command)
    assert f"cnn-zoo-{command}" in text or f"cnn_zoo.{command}" in text
    assert "cnn_zoo.train" not in text
    assert "usage:" in text


def test_help_loads_neither_torch_nor_lightning() -> None:
    """What makes --help fast: the command's own module (and torch) load only when its work starts."""
    code = (
        "import sys; sys.argv = ['cnn-zoo-evaluate', '--help']\n"
        "from cnn_zoo.cli.console_scripts import evaluate\n"
        "try:\n    evaluate()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', 'torch' in sys.modules, 'lightning' in sys.modules, 'cnn_zoo.evaluate' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "LOADED False False False"
