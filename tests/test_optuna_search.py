"""cnn_zoo's Optuna sweeper without training: the search space, samplers, outcomes, heartbeats, light plugin."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

optuna = pytest.importorskip("optuna", reason="the `hpo` extra is not installed")

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from cnn_zoo.runtime.errors import CnnZooError  # noqa: E402
from cnn_zoo.search.optuna_search import HEARTBEAT, WORKER, Search, fail_silent_trials  # noqa: E402
from cnn_zoo.search.search_space import grid_of, parse_search  # noqa: E402
from hydra_plugins.cnn_zoo_sweeper.resumable_optuna import ResumableOptunaSweeper  # noqa: E402


def test_params_syntax_becomes_optuna_distributions() -> None:
    dists, fixed = parse_search([
        "model=choice(lenet, mnist_cnn)", "optimizer.lr=tag(log, interval(1e-4, 1e-2))", "a=interval(0.0, 1.0)",
        "b=interval(1, 5)", "c=range(2, 10, 3)", "d=range(0.0, 1.0, 0.25)", "logger=none", "seed=3", "seed=4",
    ])  # fmt: skip
    assert dists["model"] == CategoricalDistribution(["lenet", "mnist_cnn"])
    assert dists["optimizer.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert dists["a"] == FloatDistribution(0.0, 1.0) and dists["b"] == FloatDistribution(1.0, 5.0)  # range: ints
    assert dists["c"] == IntDistribution(2, 8, step=3)  # Hydra's range excludes its stop
    assert dists["d"] == FloatDistribution(0.0, 0.75, step=0.25)
    assert fixed == {"logger": "none", "seed": "4"}  # a later value of a key wins
    assert grid_of({"c": dists["c"], "model": dists["model"]}) == {"c": [2, 5, 8], "model": ["lenet", "mnist_cnn"]}
    with pytest.raises(CnnZooError, match="grid sampler needs choice"):
        grid_of({"a": dists["a"]})


class FakeLauncher:
    """Hydra's launcher interface: each job's return value from `outcome(overrides)`; records what it ran."""

    def __init__(self, outcome: Callable[[dict[str, str]], Any]) -> None:
        self.outcome, self.launched = outcome, []

    def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        returns = []
        for i, overrides in enumerate(job_overrides):
            self.launched.append((initial_job_idx + i, list(overrides)))
            value = self.outcome(dict(o.split("=", 1) for o in overrides))
            failed = isinstance(value, BaseException)
            returns.append(JobReturn(status=JobStatus.FAILED if failed else JobStatus.COMPLETED, _return_value=value))
        return returns


def sweeper(tmp_path: Path, outcome: Callable[[dict[str, str]], Any], sampler: Any, **kwargs: Any) -> Any:
    options = {"storage": f"sqlite:///{tmp_path}/optuna.db", "study_name": "s", "n_trials": 4, **kwargs}
    made = ResumableOptunaSweeper(sampler=sampler, direction="maximize", **options)
    made.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "optimized_metric": "val/acc_best"})
    made.launcher = FakeLauncher(outcome)
    return made


def test_the_grid_sampler_runs_each_point_once_and_caps_n_trials(tmp_path: Path) -> None:
    import functools

    grid = functools.partial(optuna.samplers.GridSampler, seed=0)
    made = sweeper(tmp_path, lambda o: float(o["a"]) + float(o["b"]), grid, n_trials=10)
    Search(made, ["a=choice(1, 2)", "b=range(0, 3)", "logger=none"]).run()
    points = {(o[0], o[1]) for _, o in made.launcher.launched}
    assert len(made.launcher.launched) == 6 and len(points) == 6  # 2 x 3 points, n_trials 10 -> 6
    assert all(o[2] == "logger=none" for _, o in made.launcher.launched)  # fixed overrides reach every job
    assert [n for n, _ in made.launcher.launched] == list(range(6))  # job number = trial number
    assert "best_value: 4.0" in (tmp_path / "optimization_results.yaml").read_text()


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_samplers_from_the_configs_run_a_search(tmp_path: Path, sampler: str) -> None:
    if sampler == "cmaes":
        pytest.importorskip("cmaes", reason="CMA-ES needs the `cmaes` package")
    import hydra.utils

    config = OmegaConf.load(Path(__file__).parents[1] / "conf" / "hydra" / "sweeper" / "sampler" / f"{sampler}.yaml")
    config.seed = 1
    made = sweeper(tmp_path, lambda o: -((float(o["x"]) - 0.3) ** 2), hydra.utils.instantiate(config), n_trials=5)
    Search(made, ["x=interval(0.0, 1.0)", "n=choice(1, 2)"]).run()
    study = optuna.load_study(study_name="s", storage=made.storage)
    assert type(study.sampler).__name__ != "" and len(study.trials) == 5
    assert all(t.state == TrialState.COMPLETE and 0.0 <= t.params["x"] <= 1.0 for t in study.trials)


def test_failed_pruned_and_bad_values_are_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    outcomes = {"1": ValueError("boom"), "2": optuna.TrialPruned("pruned at 1"), "3": float("nan"), "4": 0.5}
    made = sweeper(tmp_path, lambda o: outcomes[o["k"]], optuna.samplers.GridSampler({"k": ["1", "2", "3", "4"]}))
    Search(made, ["k=choice('1','2','3','4')"]).run()
    study = optuna.load_study(study_name="s", storage=made.storage)
    states = {t.params["k"]: t.state for t in study.trials}
    assert states == {"1": TrialState.FAIL, "2": TrialState.PRUNED, "3": TrialState.FAIL, "4": TrialState.COMPLETE}
    made = sweeper(tmp_path / "all_fail", lambda o: ValueError("boom"), optuna.samplers.RandomSampler(), n_trials=2)
    with pytest.raises(CnnZooError, match="no trial of study 's' completed"):
        Search(made, ["k=choice(1,2)"]).run()
    made = sweeper(tmp_path / "strict", lambda o: ValueError("boom"), optuna.samplers.RandomSampler(),
                   max_failure_rate=0.0)  # fmt: skip
    with pytest.raises(CnnZooError, match="1 of 1 trials failed"):
        Search(made, ["k=choice(1,2)"]).run()


def test_only_silent_running_trials_or_those_of_gone_workers_are_recorded_failed() -> None:
    study = optuna.create_study()
    alive, dead, fresh = study.ask(), study.ask(), study.ask()
    study._storage.set_trial_system_attr(alive._trial_id, HEARTBEAT, time.time())
    study._storage.set_trial_system_attr(dead._trial_id, HEARTBEAT, time.time() - 100)
    assert fail_silent_trials(study, grace_period=30) == 1
    states = [t.state for t in study.trials]
    assert states == [TrialState.RUNNING, TrialState.FAIL, TrialState.RUNNING]  # fresh: started within the grace
    assert fresh.number == 2

    # A worker on this machine whose process is gone: failed at once, whatever its last heartbeat.
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    study._storage.set_trial_system_attr(alive._trial_id, WORKER, f"{socket.gethostname()}:{finished.pid}")
    assert fail_silent_trials(study, grace_period=30) == 1
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING]


def test_the_plugin_module_loads_neither_optuna_nor_cnn_zoo() -> None:
    """Hydra imports every hydra_plugins module at each start of any Hydra app: this one must stay light."""
    code = (
        "import sys; from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; "
        "names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]; "
        "assert 'ResumableOptunaSweeper' in names, names; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'cnn_zoo', 'torch', 'sqlalchemy')); "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
