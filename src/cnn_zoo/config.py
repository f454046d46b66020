"""Where the Hydra configs live, and plain-container conversion for everything stored in checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def to_plain(value: Any) -> Any:
    """Resolve an OmegaConf node to dicts/lists/scalars: checkpoints must load with `weights_only=True`."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value
