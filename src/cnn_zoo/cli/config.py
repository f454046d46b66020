"""Where the Hydra configs live, the resolvers they use (cache folder, `fast`, job folders), composing a config."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from cnn_zoo.runtime.config_values import user_cache_dir
from cnn_zoo.runtime.performance import register_resolvers
from cnn_zoo.search.sweeps import job_folder


def config_dir() -> Path:
    """`cnn_zoo/conf` inside an installed wheel, else the checkout's top-level `conf/` (editable install).

    The wheel carries the repository's `conf/` as package data (pyproject.toml), so both read the same files.
    """
    packaged = Path(__file__).resolve().parents[1] / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "conf"


CONFIG_DIR = str(config_dir())


# `${cnn_zoo.cache_dir:}` in conf/paths/default.yaml
OmegaConf.register_new_resolver("cnn_zoo.cache_dir", lambda: str(user_cache_dir()), replace=True)
register_resolvers()  # `fast=auto`: the configs' ${fast_precision:...} and ${fast_channels_last:...}
# `hydra.sweep.subdir` in conf/hydra/default.yaml: `3_model=lenet,optimizer.lr=0.001`
OmegaConf.register_new_resolver("cnn_zoo.job_folder", lambda num, overrides: job_folder(num, overrides), replace=True)


def compose_train_config(overrides: list[str], run_dir: str | Path, config_name: str = "train") -> DictConfig:
    """Compose a config as `@hydra.main` would, with its run folder at `run_dir`: for scripts and tests."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(
            config_name=config_name, overrides=[f"hydra.run.dir={run_dir}", *overrides], return_hydra_config=True
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        del cfg.hydra
    return cfg
