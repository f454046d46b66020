"""One run, one folder: `resume=<run folder>` continues a run where it lives, and no run overwrites another.

`resume_arguments` turns `resume=<folder>` into the run's own overrides (from `<folder>/.hydra/overrides.yaml`)
plus `hydra.run.dir=<folder>` and `ckpt_path=<folder>/checkpoints/last.ckpt`, before Hydra composes anything:
the resumed run writes its TensorBoard events, checkpoints, metrics.json and report beside the earlier ones.
Other command-line overrides would make it another run and are refused, except `SAFE_ON_RESUME` ones.

`RunFolderGuard` (a Hydra callback, `conf/hydra/default.yaml`) stops a run pointed at a folder that already holds
a run (its metrics.json or last.ckpt) unless it resumes that run, before Hydra writes anything there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cnn_zoo.runtime.errors import CnnZooError, user_errors

# overrides that may change when a run is resumed: how long it trains, what it prints, whether it tests
SAFE_ON_RESUME = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.enable_progress_bar",
    "callbacks.rich_progress_bar",
    "callbacks.model_summary",
    "callbacks.early_stopping.patience",
    "callbacks.last_checkpoint.every_n_train_steps",
    "test",
)
LAST = Path("checkpoints") / "last.ckpt"


def override_key(argument: str) -> str:
    return argument.split("=", 1)[0].lstrip("+~")


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / LAST


def resume_arguments(arguments: Sequence[str]) -> list[str]:
    """The command line with `resume=<folder>` replaced by that run's own overrides (unchanged without it)."""
    arguments = [a for a in arguments if a not in ("resume=null", "resume=")]
    resumes = [a for a in arguments if a.startswith("resume=")]
    if not resumes:
        return arguments
    if len(resumes) > 1 or any(a in ("-m", "--multirun") for a in arguments):
        raise CnnZooError("resume= takes one run folder and no -m/--multirun: python -m cnn_zoo.train resume=<run>")
    folder = Path(resumes[0].split("=", 1)[1]).expanduser().resolve()
    saved = folder / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise CnnZooError(f"resume={folder}: no run there (no .hydra/overrides.yaml); pass the folder a run printed")
    if not last_checkpoint(folder).is_file():
        raise CnnZooError(f"resume={folder}: the run saved no {LAST}; start it again instead")
    extra = [a for a in arguments if a not in resumes]
    for argument in extra:
        if argument.startswith("-") or "=" not in argument or override_key(argument) not in SAFE_ON_RESUME:
            raise CnnZooError(
                f"resume= continues {folder} with its own config, and {argument!r} would change it; only "
                f"{', '.join(SAFE_ON_RESUME)} may change (or start a new run without resume=)"
            )
    changed = {override_key(a) for a in extra}
    original = [str(a) for a in yaml.safe_load(saved.read_text()) or []]
    kept = [a for a in original if override_key(a) not in changed and override_key(a) not in ("ckpt_path", "resume")]
    return [*kept, *extra, f'hydra.run.dir="{folder}"', f'ckpt_path="{last_checkpoint(folder)}"']


def slurm_requeued() -> bool:
    """Whether this process is a SLURM job started again by a requeue (`cnn_zoo.callbacks.stop_signals`): it
    continues the run in its folder from `checkpoints/last.ckpt` when there is one."""
    return os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0")


def holds_run(folder: Path) -> str | None:
    """'finished' or 'interrupted' when `folder` holds a run's results, else None."""
    if (folder / "metrics.json").is_file():
        return "finished"
    if last_checkpoint(folder).is_file():
        return "interrupted"
    return None


def resumes_in(ckpt_path: Any, folder: Path) -> bool:
    """Whether `ckpt_path` continues the run in `folder` (`last`, or a checkpoint inside it)."""
    if not ckpt_path:
        return False
    if str(ckpt_path) == "last":
        return True
    return Path(str(ckpt_path)).expanduser().resolve().is_relative_to(folder)


def check_run_folder(folder: Path, ckpt_path: Any) -> None:
    state = holds_run(folder)
    if state == "interrupted" and not ckpt_path and slurm_requeued():
        return
    if state and not resumes_in(ckpt_path, folder):
        raise CnnZooError(
            f"hydra.run.dir={folder} already holds a {state} run; continue it with resume={folder} "
            "(or ckpt_path=last), or choose another folder"
        )


class RunFolderGuard(Callback):
    """Hydra callback: refuse, before anything is written, a single run into a folder holding another run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.environ.get("LOCAL_RANK", "0") != "0":  # a DDP child re-running its job in rank zero's folder
            return
        # The default folder name holds `${hydra:runtime.choices.data}`, which resolves through HydraConfig: Hydra
        # sets it from this same config only when the job starts, after this callback, so set it here first.
        HydraConfig.instance().set_config(config)
        folder = Path(str(OmegaConf.select(config, "hydra.run.dir"))).expanduser().resolve()
        with user_errors():
            check_run_folder(folder, OmegaConf.select(config, "ckpt_path", default=None))
