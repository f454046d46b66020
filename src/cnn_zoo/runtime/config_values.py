"""What every layer needs from the config without the command-line layer: plain containers for checkpoints, and
the cache folder. Here rather than in `cnn_zoo.cli.config`, so data and models import nothing of the CLI (and none
of the resolvers it registers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def user_cache_dir() -> Path:
    """Downloads, extracted archives and encoded datasets: `CNN_ZOO_CACHE_DIR`, else the user's cache folder.

    Never inside the package or the data folder, so both may be read-only.
    """
    if os.environ.get("CNN_ZOO_CACHE_DIR"):
        return Path(os.environ["CNN_ZOO_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "cnn_zoo"


def to_plain(value: Any) -> Any:
    """Resolve an OmegaConf node to dicts/lists/scalars: checkpoints must load with `weights_only=True`."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value
