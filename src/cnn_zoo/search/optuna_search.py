"""An Optuna (>= 4) search run through Hydra's launcher with the ask/tell API, by one worker or many.

One study in a storage (SQLite in the sweep folder by default; any SQLAlchemy URL, e.g. PostgreSQL, for workers
on several machines). Each worker loops: record silent trials of dead workers as failed, ask a trial, launch
it as a Hydra job whose folder is the trial's number (so workers sharing a sweep folder never collide), tell
the result. `n_trials` is the study's total: a rerun only runs the missing trials, and parallel workers stop
together when the study holds `n_trials`. While a trial runs its worker writes a heartbeat into the study;
a RUNNING trial whose heartbeat stopped for `grace_period` seconds (its worker was killed), or whose worker process
on this machine is gone, is recorded failed.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.search.search_space import grid_of, parse_search, suggest

log = logging.getLogger(__name__)

HEARTBEAT = "cnn_zoo:heartbeat"  # trial system attribute: the worker's last sign of life (seconds since epoch)
WORKER = "cnn_zoo:worker"  # trial system attribute: host:pid of the worker running it


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """A daemon thread that stamps `HEARTBEAT` on this worker's running trials every `interval` seconds."""

    def __init__(self, study: optuna.Study, interval: float) -> None:
        self.study, self.interval = study, interval
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, name="optuna-heartbeat", daemon=True)
        self.thread.start()

    def beat(self, trial_id: int) -> None:
        self.study._storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())

    def add(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.add(trial_id)
            self.study._storage.set_trial_system_attr(trial_id, WORKER, worker_name())
            self.beat(trial_id)

    def discard(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            with self.lock:
                for trial_id in list(self.trial_ids):
                    try:
                        self.beat(trial_id)
                    except Exception as err:  # a storage hiccup: the next beat retries
                        log.debug("heartbeat of trial %d failed: %s", trial_id, err)

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=self.interval + 5)


def last_sign_of_life(trial: FrozenTrial) -> float:
    beat = trial.system_attrs.get(HEARTBEAT)
    if isinstance(beat, int | float):
        return float(beat)
    return trial.datetime_start.timestamp() if trial.datetime_start else 0.0


def gone_from_this_host(worker: str) -> bool:
    """True when `worker` (host:pid) ran on this machine and that process no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def fail_silent_trials(study: optuna.Study, grace_period: float, mine: Iterable[int] = ()) -> int:
    """Record as failed the RUNNING trials (not this worker's) silent for `grace_period` s, or whose worker
    process on this machine is gone; returns how many."""
    now, failed, own = time.time(), 0, set(mine)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id in own:
            continue
        silent = now - last_sign_of_life(trial)
        worker = str(trial.system_attrs.get(WORKER, "unknown worker"))
        if gone_from_this_host(worker):
            why = f"its worker {worker} is gone"
        elif silent > grace_period:
            why = f"{worker} silent for {silent:.0f} s"
        else:
            continue
        log.warning("trial %d was interrupted (%s): recording it as failed", trial.number, why)
        try:
            study.tell(trial.number, state=TrialState.FAIL)
            failed += 1
        except (RuntimeError, ValueError) as err:  # another worker recorded it first
            log.debug("trial %d: %s", trial.number, err)
    return failed


def counted(study: optuna.Study) -> int:
    """Trials that count towards `n_trials`: all but the waiting ones (asked beyond the total, put back)."""
    states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=states))


def contiguous(numbers: Sequence[int]) -> list[list[int]]:
    """[3, 4, 7] -> [[3, 4], [7]]: the launcher numbers the jobs of one launch consecutively."""
    groups: list[list[int]] = []
    for n in numbers:
        if groups and n == groups[-1][-1] + 1:
            groups[-1].append(n)
        else:
            groups.append([n])
    return groups


def is_pruned(error: BaseException) -> bool:
    return isinstance(error, optuna.TrialPruned)


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def prepare_storage(storage: Any, attempts: int = 5) -> Any:
    """The storage: a SQLite file's folder made; a database URL opened as Optuna's RDBStorage, retried while
    workers started at once race to create its tables (one wins, the others find them on the next try)."""
    if not isinstance(storage, str) or "://" not in storage:
        return storage
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(storage)
        except SQLAlchemyError as err:
            log.info("opening the study's storage failed (%s): retrying", one_line(err))
            time.sleep(attempt * (0.5 + random.random()))
    return optuna.storages.RDBStorage(storage)


def shown(storage: Any) -> str:
    """A storage URL for the log, its password hidden."""
    if not isinstance(storage, str) or "://" not in storage:
        return str(storage)
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


class Search:
    """The state of one worker's search; `run()` is `Sweeper.sweep`."""

    def __init__(self, sweeper: Any, arguments: list[str]) -> None:
        self.sweeper = sweeper
        self.config = sweeper.config
        params = [f"{k}={v}" for k, v in (sweeper.params or {}).items()]
        self.distributions, self.fixed = parse_search([*params, *arguments])
        self.n_trials = int(sweeper.n_trials)
        self.n_jobs = max(1, int(sweeper.n_jobs))
        self.sampler = sweeper.sampler
        if isinstance(self.sampler, functools.partial) and self.sampler.func is optuna.samplers.GridSampler:
            grid = grid_of(self.distributions)
            self.sampler = self.sampler(grid)
            size = math.prod(len(v) for v in grid.values())
            if size < self.n_trials:
                log.info("the grid holds %d points: n_trials %d -> %d", size, self.n_trials, size)
                self.n_trials = size
        # no pruner configured: NopPruner (Optuna's default would be a MedianPruner that nothing feeds)
        pruner = sweeper.pruner if isinstance(sweeper.pruner, optuna.pruners.BasePruner) else optuna.pruners.NopPruner()
        directions = sweeper.direction if isinstance(sweeper.direction, Sequence) and not isinstance(
            sweeper.direction, str) else [sweeper.direction]  # fmt: skip
        self.directions = [str(getattr(d, "name", d)) for d in directions]
        self.study = optuna.create_study(
            study_name=sweeper.study_name,
            storage=prepare_storage(sweeper.storage),
            sampler=self.sampler,
            pruner=pruner,
            directions=self.directions,
            load_if_exists=True,
        )
        self.heartbeat_interval = float(sweeper.heartbeat_interval)
        self.grace_period = float(sweeper.grace_period)
        self.running: dict[int, optuna.Trial] = {}  # trial number -> trial, this worker's

    def run(self) -> None:
        study = self.study
        stored = counted(study)
        fail_silent_trials(study, self.grace_period)
        log.info("study %r in %s: %d of %d trials stored, sampler %s, pruner %s", study.study_name,
                 shown(self.sweeper.storage), stored, self.n_trials, type(self.sampler).__name__,
                 type(study.pruner).__name__)  # fmt: skip
        heartbeat = Heartbeat(study, self.heartbeat_interval)
        try:
            while batch := self.ask(heartbeat):
                self.launch(batch, heartbeat)
            self.wait_for_others()
        finally:
            heartbeat.close()
            for trial in self.running.values():  # interrupted here (Ctrl-C, an error of the launcher)
                log.warning("trial %d was interrupted: recording it as failed", trial.number)
                self.record(trial, state=TrialState.FAIL)
        self.write_results()

    def ask(self, heartbeat: Heartbeat) -> list[optuna.Trial]:
        """Up to `n_jobs` new trials, none beyond the study's `n_trials` (workers race: extra ones wait)."""
        fail_silent_trials(self.study, self.grace_period, [t._trial_id for t in self.running.values()])
        batch: list[optuna.Trial] = []
        while len(batch) < self.n_jobs and counted(self.study) < self.n_trials:
            trial = self.study.ask()
            if trial.number >= self.n_trials:  # another worker took the last one meanwhile: put it back
                self.study._storage.set_trial_state_values(trial._trial_id, state=TrialState.WAITING)
                break
            heartbeat.add(trial._trial_id)
            self.running[trial.number] = trial
            for name, dist in self.distributions.items():
                suggest(trial, name, dist)
            batch.append(trial)
        return batch

    def overrides(self, trial: optuna.Trial) -> list[str]:
        return [*(f"{k}={v}" for k, v in trial.params.items()), *(f"{k}={v}" for k, v in self.fixed.items())]

    def launch(self, batch: list[optuna.Trial], heartbeat: Heartbeat) -> None:
        by_number = {t.number: t for t in batch}
        returns: list[tuple[optuna.Trial, JobReturn]] = []
        for group in contiguous(sorted(by_number)):
            trials = [by_number[n] for n in group]
            results = self.sweeper.launcher.launch([self.overrides(t) for t in trials], initial_job_idx=group[0])
            returns += zip(trials, results, strict=True)
        failures = 0
        for trial, result in returns:
            failures += not self.tell(trial, result)
            heartbeat.discard(trial._trial_id)
            self.running.pop(trial.number, None)
        if failures / len(returns) > float(self.sweeper.max_failure_rate):
            raise CnnZooError(f"{failures} of {len(returns)} trials failed (max_failure_rate="
                              f"{self.sweeper.max_failure_rate}): see each job's log")  # fmt: skip

    def tell(self, trial: optuna.Trial, result: JobReturn) -> bool:
        """Record one job's outcome in the study; False when it failed."""
        if result.status == JobStatus.COMPLETED:
            value = result._return_value
            values = list(value) if isinstance(value, list | tuple) else [value]
            try:
                floats = [float(v) for v in values]
            except (TypeError, ValueError):
                floats = []
            if len(floats) == len(self.directions) and not any(math.isnan(v) for v in floats):
                return self.record(trial, values=floats)
            log.warning("trial %d returned %r, not %d number(s): recording it as failed", trial.number, value,
                        len(self.directions))  # fmt: skip
            self.record(trial, state=TrialState.FAIL)
            return False
        error = result._return_value
        if isinstance(error, BaseException) and is_pruned(error):
            log.info("trial %d pruned: %s", trial.number, error)
            return self.record(trial, state=TrialState.PRUNED)
        detail = one_line(error) if isinstance(error, BaseException) else str(error)
        log.warning("trial %d failed: %s", trial.number, detail)
        self.record(trial, state=TrialState.FAIL)
        return False

    def record(self, trial: optuna.Trial, **outcome: Any) -> bool:
        """`study.tell`; a trial another worker already recorded failed (this one fell silent) stays so."""
        try:
            self.study.tell(trial, **outcome)
        except (RuntimeError, ValueError) as err:
            log.warning("trial %d: not recorded (%s)", trial.number, err)
            return False
        return True

    def wait_for_others(self) -> None:
        """Wait for the other workers' running trials (or their silence), so the results below cover all."""
        announced = False
        while running := self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not announced:
                log.info("waiting for %d trial(s) of other workers: %s", len(running), [t.number for t in running])
                announced = True
            time.sleep(min(self.heartbeat_interval, 5.0))
            fail_silent_trials(self.study, self.grace_period)

    def write_results(self) -> None:
        """`optimization_results.yaml` in the sweep folder: the best trial of the whole study."""
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise CnnZooError(
                f"no trial of study {self.study.study_name!r} completed; their errors are in "
                f"{Path(self.config.hydra.sweep.dir) / 'summary.md'} and each job's log"
            )
        results: dict[str, Any] = {"name": "optuna", "study_name": self.study.study_name}
        if len(self.directions) == 1:
            best = self.study.best_trial
            results |= {"best_trial": best.number, "best_params": best.params, "best_value": best.value}
            log.info("best trial %d: %s = %s, %s", best.number, self.config.get("optimized_metric"), best.value,
                     best.params)  # fmt: skip
        else:
            results["solutions"] = [{"trial": t.number, "params": t.params, "values": t.values}
                                    for t in self.study.best_trials]  # fmt: skip
        states = [t.state.name.lower() for t in self.study.get_trials(deepcopy=False)]
        results["trials"] = {s: states.count(s) for s in sorted(set(states))}
        path = Path(self.config.hydra.sweep.dir) / "optimization_results.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        OmegaConf.save(OmegaConf.create(results), tmp)
        os.replace(tmp, path)
