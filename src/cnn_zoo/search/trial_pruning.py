"""Pruning of an Optuna search's trials: the optimized metric reported each epoch, the trial stopped early.

A job of cnn_zoo's Optuna sweeper finds its trial from the Hydra config it runs with: the sweeper's
`storage` and `study_name`, and its job number (the trial's number). This works whatever the launcher
(in process, joblib, SLURM), since only the study's storage is shared.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from omegaconf import DictConfig

log = logging.getLogger(__name__)

SWEEPER = "hydra_plugins.cnn_zoo_sweeper.resumable_optuna.ResumableOptunaSweeper"


class TrialPruning(L.Callback):
    """Report `monitor` to the trial after each validation; raise `optuna.TrialPruned` when the pruner says so.

    Written here rather than taken from optuna-integration: it needs nothing beyond Optuna, reports from rank
    zero only and skips the sanity check's validation.
    """

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import optuna

        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            message = f"trial {self.trial.number} pruned after epoch {epoch}: {self.monitor}={float(value):.4g}"
            raise optuna.TrialPruned(message)


def pruning_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """`[TrialPruning]` in a job of cnn_zoo's Optuna sweeper that has a pruner, else `[]`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return []
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    if hydra_cfg.mode != RunMode.MULTIRUN or sweeper.get("_target_") != SWEEPER or not sweeper.get("pruner"):
        return []
    import hydra.utils
    import optuna

    study = optuna.load_study(
        study_name=sweeper.study_name, storage=sweeper.storage, pruner=hydra.utils.instantiate(sweeper.pruner)
    )
    number = int(hydra_cfg.job.num)
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    monitor = str(cfg.get("optimized_metric") or "val/acc_best")
    log.info("pruning: %s reported to trial %d each epoch (%s)", monitor, number, type(study.pruner).__name__)
    return [TrialPruning(optuna.trial.Trial(study, trial_id), monitor)]
