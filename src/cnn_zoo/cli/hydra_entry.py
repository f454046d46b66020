"""Running a `@hydra.main` entry point so that a command-line mistake is one line, like every other user error.

Hydra reports a bad override (`trainer.max_epoch=3`, `model=nosuch`, `a=[1,`) in several lines with exit status
1. `hydra_command` asks Hydra to raise instead (HYDRA_FULL_ERROR, for a single run only: a sweep keeps Hydra's
own reporting of failed jobs) and prints the error as `error: ...` with exit status 2.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.errors import CompactHydraException, MissingConfigException
from omegaconf import DictConfig

from cnn_zoo.cli.config import CONFIG_DIR
from cnn_zoo.cli.run_logging import tidy_output
from cnn_zoo.runtime import memory, performance, startup_gc
from cnn_zoo.runtime.errors import CnnZooError, one_line, user_errors


def hydra_message(err: BaseException) -> str:
    """Hydra's message and its cause in one line (`one_line`); a missing option lists the available ones."""
    if isinstance(err, MissingConfigException) and "Available options" in str(err):
        lines = [line.strip().rstrip(".") for line in str(err).splitlines() if line.strip()]
        start = lines.index(next(line for line in lines if line.startswith("Available options")))
        options = [line for line in lines[start + 1 :] if not line.startswith(("Config search path", "provider="))]
        return f"{lines[0]}; available: {', '.join(options)}"
    return one_line(err, named=False, limit=2000)


def hydra_command(run: Callable[[], Any]) -> Any:
    """Call the `@hydra.main` function `run`; Hydra's own composition and override errors become one line.

    The garbage collector waits until the command's work starts (`cnn_zoo.runtime.startup_gc`): 0.6 s of start-up.
    """
    with startup_gc.paused_during_startup():
        return _hydra_command(run)


def _hydra_command(run: Callable[[], Any]) -> Any:
    sweeps = ("hydra/sweeper=", "hparams_search=", "hydra.mode=")
    sweep = any(a in ("-m", "--multirun") or a.startswith(sweeps) for a in sys.argv[1:])
    if sweep or "HYDRA_FULL_ERROR" in os.environ:
        return run()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # raise composition errors to us instead of printing them
    try:
        return run()
    except CompactHydraException as err:
        with user_errors():
            raise CnnZooError(f"bad command line: {hydra_message(err)}") from None
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def imported_when_run(path: str) -> Callable[[DictConfig], Any]:
    """The task `module:function`, imported only when it runs: `--help` and a mistyped override answer without
    loading torch and Lightning. Hydra names the job after the module, as for the function itself."""
    module_name, _, name = path.partition(":")

    def task(cfg: DictConfig) -> Any:
        return getattr(importlib.import_module(module_name), name)(cfg)

    task.__module__, task.__name__, task.__qualname__ = module_name, name, name
    return task


def entry_point(task: Callable[[DictConfig], Any] | str, config_name: str) -> Callable[[], Any]:
    """The `main()` of a `cnn-zoo-<name>` command running `task` on `conf/<config_name>.yaml`.

    `task` is a function, or its `module:function` path (`imported_when_run`). A user's mistake, in the values
    (`CnnZooError`) or on the command line (Hydra), is one `error:` line with exit status 2; Hydra names the job
    after `task`'s module (`functools.wraps`), so logs stay `<name>.log`.
    """
    if isinstance(task, str):
        task = imported_when_run(task)

    @functools.wraps(task)
    def guarded(cfg: DictConfig) -> Any:
        with user_errors():
            tidy_output()
            return task(cfg)

    run = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(guarded)

    def main() -> Any:
        performance.set_openmp_defaults()  # the command's CPU settings, before torch loads (never at import)
        memory.keep_freed_memory()
        return hydra_command(run)

    return main
