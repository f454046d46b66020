"""`data.batch_size=auto`: Lightning's batch-size finder (`Tuner.scale_batch_size`) picks the batch, once per run.

The finder doubles the batch (from `batch_size_finder.init_val`) for a few steps each until it runs out of memory,
`max_trials` doublings or `max_val`. On a GPU running out of memory is an error the finder catches; on the CPU it is
not: the machine swaps, or the kernel kills the process. So on the CPU `data.batch_size=auto` needs a cap the user
chose (`batch_size_finder.max_val=<n>`) and is refused in one line without one. Under DDP it is refused (Lightning's
finder does not support distributed strategies). The found size is applied to the data module, logged, written to
`metrics.json` (`data/batch_size`) and to `<run>/batch_size.json`; a resumed run (`resume=<run>`) reuses that file
instead of searching again, so it trains on the batch size it started with.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)

AUTO = "auto"
STORED = "batch_size.json"
METRIC = "data/batch_size"


def is_auto(cfg: DictConfig) -> bool:
    return str(cfg.data.get("batch_size")) == AUTO


def distributed_by_config(trainer_cfg: Any) -> bool:
    strategy = trainer_cfg.get("strategy")
    target = strategy.get("_target_", "") if hasattr(strategy, "get") else str(strategy or "")
    devices = trainer_cfg.get("devices")
    many = isinstance(devices, int) and devices > 1 or isinstance(devices, list | tuple) and len(devices) > 1
    return "ddp" in str(target).lower() or many or int(trainer_cfg.get("num_nodes") or 1) > 1


def on_cpu(cfg: DictConfig) -> bool:
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator == "cpu":
        return True
    import torch

    return accelerator in ("auto", "gpu", "cuda") and not torch.cuda.is_available()


def prepare(cfg: DictConfig) -> str | None:
    """Before the data module is built: `data.batch_size` becomes a number (a resumed run's stored size, or the
    finder's first trial). Returns None (a number was given), "stored" or "search" (after the trainer is built:
    `search`)."""
    if not is_auto(cfg):
        return None
    if distributed_by_config(cfg.trainer):
        raise CnnZooError(
            "data.batch_size=auto runs Lightning's batch-size finder, which does not support DDP: find the size in "
            "one process (trainer=default), then pass data.batch_size=<n>"
        )
    stored = Path(str(cfg.paths.output_dir)) / STORED
    if stored.is_file():
        size = int(json.loads(stored.read_text())["batch_size"])
        cfg.data.batch_size = size
        log.info("data.batch_size=auto: %d, found when this run started (%s); not searched again", size, stored)
        return "stored"
    options = cfg.batch_size_finder
    if options.get("max_val") is None and on_cpu(cfg):
        raise CnnZooError(
            "data.batch_size=auto on the CPU needs a cap: the finder grows the batch until memory runs out, which on "
            "the CPU swaps or gets the run killed; set batch_size_finder.max_val=<largest batch to try>, or pass "
            "data.batch_size=<n>"
        )
    cfg.data.batch_size = int(options.init_val)
    return "search"


def search(trainer: Any, model: Any, datamodule: Any, cfg: DictConfig) -> int:
    """Lightning's finder on this model and data; the size is set on the data module, stored and returned."""
    from lightning.pytorch.tuner import Tuner

    if trainer.world_size > 1:
        raise CnnZooError("data.batch_size=auto does not support DDP: pass data.batch_size=<n>")
    options = cfg.batch_size_finder
    found = Tuner(trainer).scale_batch_size(
        model,
        datamodule=datamodule,
        mode=str(options.mode),
        steps_per_trial=int(options.steps_per_trial),
        init_val=int(options.init_val),
        max_trials=int(options.max_trials),
        max_val=int(options.max_val) if options.get("max_val") is not None else 8192,
    )
    if found is None:
        raise CnnZooError("data.batch_size=auto: the batch-size finder found no size (fast_dev_run?); pass a number")
    found = int(found)
    datamodule.batch_size = found
    cfg.data.batch_size = found
    if trainer.is_global_zero:
        from cnn_zoo.runtime.faults import write_json

        write_json(cfg.paths.output_dir, STORED, {"batch_size": found})
    log.info("data.batch_size=auto: %d (Lightning's batch-size finder, %s mode, up to %s)", found, options.mode,
             options.get("max_val") or 8192)  # fmt: skip
    return found
