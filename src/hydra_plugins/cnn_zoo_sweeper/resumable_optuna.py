"""An Optuna sweeper that continues a stored study: `hydra.sweeper._target_` in conf/hparams_search/*.yaml."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cnn_zoo.errors import CnnZooError

log = logging.getLogger(__name__)


class ResumableStudy:
    """What makes hydra-optuna-sweeper 1.3 continue a stored study instead of starting over.

    With a persistent `storage` (SQLite in the sweep folder) and the same `study_name`:
    `n_trials` counts the study's trials in total (a rerun only runs the missing ones), trials left
    `RUNNING` by an interrupted search are marked failed, and job folders continue after the last one
    (the stock sweeper numbers from 0 again and would overwrite the first job folders).
    """

    sweeper: Any  # the stock sweeper's implementation, set by OptunaSweeper.__init__

    def sweep(self, arguments: list[str]) -> None:
        import optuna  # here, not at the top: Hydra imports every plugin module at each start

        impl = self.sweeper
        storage = impl.storage
        if isinstance(storage, str) and storage.startswith("sqlite:///"):
            Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        study = self.stored_study()
        if study is not None:
            for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                log.warning("trial %d was interrupted: recording it as failed", trial.number)
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            done = len(study.trials)
            impl.job_idx = done
            impl.n_trials = max(0, impl.n_trials - done)
            log.info("resuming study %r: %d trials stored, %d to run", study.study_name, done, impl.n_trials)
        try:
            return impl.sweep(arguments)
        except ValueError as err:  # the stock sweeper asks for the best trial even when none completed
            study = self.stored_study()
            if study is None or any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                raise
            raise CnnZooError(
                f"no trial of study {study.study_name!r} completed; their errors are in "
                f"{Path(impl.config.hydra.sweep.dir) / 'summary.md'} and each job's log"
            ) from err

    def stored_study(self) -> Any:
        import optuna

        impl = self.sweeper
        if not impl.storage or not impl.study_name:
            return None
        try:
            return optuna.load_study(study_name=impl.study_name, storage=impl.storage)
        except KeyError:  # no such study yet
            return None


try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # without the `hpo` extra there is no Optuna search; Hydra still imports this module at start
    pass
else:

    class ResumableOptunaSweeper(ResumableStudy, OptunaSweeper):
        """The stock Optuna sweeper with `ResumableStudy`: the `_target_` of conf/hparams_search/*.yaml."""
