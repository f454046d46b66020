"""Parallel workers of one Optuna search on a real PostgreSQL server (started and stopped by the tests)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import job_dir, postgres_server, wait_until
from tests.test_sweeps import TINY

optuna = pytest.importorskip("optuna", reason="the `hpo` extra is not installed")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def start_worker(mnist_root: Path, folder: Path, name: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(mnist_root)}
    out = (folder / f"{name}.out").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "cnn_zoo.train", *args], stdout=out, stderr=subprocess.STDOUT, env=env, text=True
    )


def search_args(storage: str, study: str, sweep: Path, n_trials: int) -> list[str]:
    return [
        "hparams_search=mnist_optuna", f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweep.dir={sweep}", "hydra.sweeper.sampler.seed=3",
        "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4", "logger=none", "model=lenet",
        "optimizer.weight_decay=0", "data.batch_size=32", *TINY,
    ]  # fmt: skip


def test_two_workers_share_one_study_without_running_a_trial_twice(
    postgres: str, mnist_root: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "search"
    sweep.mkdir()
    args = search_args(postgres, "two_workers", sweep, 6)
    workers = [start_worker(mnist_root, tmp_path, f"worker{i}", *args) for i in range(2)]
    codes = [w.wait(timeout=900) for w in workers]
    outputs = [(tmp_path / f"worker{i}.out").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outputs)

    study = optuna.load_study(study_name="two_workers", storage=postgres)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.number for t in trials) == list(range(6))
    assert len(study.get_trials(states=(optuna.trial.TrialState.RUNNING,))) == 0
    ran_by = {t.number: t.system_attrs["cnn_zoo:worker"] for t in trials}
    assert len(set(ran_by.values())) == 2, ran_by  # both workers drew trials
    for number in range(6):  # each trial's folder holds one run: no trial ran twice
        log = (job_dir(sweep, number) / "train.log").read_text()
        assert log.count("run folder:") == 1, log
        assert json.loads((job_dir(sweep, number) / "job.json").read_text())["status"] == "completed"

    best = max(trials, key=lambda t: t.value)
    results = (sweep / "optimization_results.yaml").read_text()
    assert f"best_trial: {best.number}" in results and f"best_value: {best.value}" in results
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert sorted(int(r["job"]) for r in rows) == list(range(6))  # the summary covers both workers' jobs
    assert "6 jobs: 6 completed" in (sweep / "summary.md").read_text()


def test_a_killed_worker_leaves_its_trial_failed_and_the_other_finishes(
    postgres: str, mnist_root: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "search"
    sweep.mkdir()
    args = search_args(postgres, "killed_worker", sweep, 4)
    # the first worker's trials train long enough to be killed mid-trial
    doomed = start_worker(mnist_root, tmp_path, "doomed", *args, "trainer.max_epochs=200")
    study = None

    def doomed_is_training() -> bool:
        nonlocal study
        if doomed.poll() is not None:
            raise RuntimeError((tmp_path / "doomed.out").read_text()[-3000:])
        try:
            study = study or optuna.load_study(study_name="killed_worker", storage=postgres)
        except KeyError:
            return False
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        return any(str(t.system_attrs.get("cnn_zoo:worker", "")).endswith(f":{doomed.pid}") for t in running)

    wait_until(doomed_is_training, 300, "the first worker's trial")
    survivor = start_worker(mnist_root, tmp_path, "survivor", *args)
    time.sleep(2)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=60)
    assert survivor.wait(timeout=900) == 0, (tmp_path / "survivor.out").read_text()[-3000:]

    study = optuna.load_study(study_name="killed_worker", storage=postgres)
    states = {t.number: t.state for t in study.trials}
    assert sorted(states) == [0, 1, 2, 3]
    assert states[0] == optuna.trial.TrialState.FAIL  # the killed worker's trial
    assert all(states[n] == optuna.trial.TrialState.COMPLETE for n in (1, 2, 3))
    output = (tmp_path / "survivor.out").read_text()
    assert "trial 0 was interrupted" in output
    assert "best trial" in output
    assert not (job_dir(sweep, 0) / "job.json").exists()  # killed before Hydra recorded an outcome
    assert "1 interrupted" in (sweep / "summary.md").read_text()
