"""cnn_zoo's Optuna sweeper (Optuna >= 4, ask/tell): `hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml).

Hydra imports every module under `hydra_plugins` at each start of any Hydra app, so this one imports only
Hydra at the top: Optuna and the search itself (`cnn_zoo.search.optuna_search`) load when a search starts.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ResumableOptunaSweeper(Sweeper):
    """A study in `storage` that a rerun continues and several workers share (see `cnn_zoo.search.optuna_search`).

    `n_trials` is the study's total; `n_jobs` trials are launched at a time; a trial whose worker fell
    silent for `grace_period` seconds (heartbeats every `heartbeat_interval`) is recorded failed.
    """

    def __init__(
        self,
        sampler: Any = None,
        pruner: Any = None,
        direction: Any = "maximize",
        storage: Any = None,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 1.0,
        params: DictConfig | None = None,
        heartbeat_interval: float = 10.0,
        grace_period: float = 60.0,
    ) -> None:
        self.sampler, self.pruner, self.direction = sampler, pruner, direction
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = params
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        from cnn_zoo.search.optuna_search import Search

        Search(self, arguments).run()
