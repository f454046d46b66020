"""Multirun grids and Optuna searches through the real CLI: job folders, summaries, failures, resuming."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from cnn_zoo.search.sweeps import job_number, write_summary
from tests.servers import job_dir

# One epoch on the generated MNIST, no progress bars: each job takes a few seconds.
TINY = [
    "data.download=false",
    "data.val_size=60",
    "data.batch_size=32",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "+trainer.enable_progress_bar=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]


def job_folder(sweep: Path, number: int) -> Path:
    """The folder of job `number` (`<number>_<its overrides>`)."""
    found = [p for p in sweep.iterdir() if p.is_dir() and job_number(p) == number]
    assert len(found) == 1, sorted(p.name for p in sweep.iterdir())
    return found[0]


def run_cli(mnist_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(mnist_root)}
    return subprocess.run(
        [sys.executable, "-m", "cnn_zoo.train", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_grid_multirun_writes_one_folder_per_job_and_a_summary(mnist_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(
        mnist_root, "-m", "model=lenet,mnist_cnn", "optimizer.lr=1e-3,3e-4", f"hydra.sweep.dir={sweep}", "logger=none",
        *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    folders = sorted((p for p in sweep.iterdir() if p.is_dir()), key=job_number)
    # named by the job's swept overrides only (not the fixed ones, not hydra.sweep.dir)
    assert [p.name for p in folders] == [
        "0_model=lenet,optimizer.lr=0.001", "1_model=lenet,optimizer.lr=0.0003",
        "2_model=mnist_cnn,optimizer.lr=0.001", "3_model=mnist_cnn,optimizer.lr=0.0003",
    ]  # fmt: skip
    for folder in folders:
        assert json.loads((folder / "job.json").read_text())["status"] == "completed"
        assert (folder / "metrics.json").is_file()
    assert (sweep / "report.html").is_file()

    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert {(r["model"], float(r["optimizer.lr"])) for r in rows} == {
        (m, lr) for m in ("lenet", "mnist_cnn") for lr in (1e-3, 3e-4)
    }
    for row, folder in zip(rows, folders, strict=True):
        metrics = json.loads((folder / "metrics.json").read_text())
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])
        assert float(row["val/acc_best"]) == pytest.approx(metrics["val/acc_best"])

    markdown = (sweep / "summary.md").read_text()
    assert "4 jobs: 4 completed" in markdown
    assert "Common overrides:" in markdown and "`logger=none`" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| job | status | model | optimizer.lr | val/acc_best |")
    assert len(table) == 1 + 4


def test_summary_reports_failed_and_interrupted_jobs_and_the_best(tmp_path: Path) -> None:
    for job, lr, metrics, status in (
        (0, "0.1", {"val/acc_best": 0.5, "test/acc": 0.4}, {"status": "completed"}),
        (1, "0.2", {}, {"status": "failed", "error": "CnnZooError: bad value"}),
        (2, "0.3", {"val/acc_best": 0.7, "test/acc": 0.6}, {"status": "completed"}),
        (3, None, {}, None),  # killed before Hydra wrote its overrides
    ):
        folder = tmp_path / str(job)
        (folder / ".hydra").mkdir(parents=True)
        if lr:
            (folder / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={lr}\n- model=lenet\n")
        if metrics:
            (folder / "metrics.json").write_text(json.dumps(metrics))
        if status:
            (folder / "job.json").write_text(json.dumps(status))
    jobs = write_summary(tmp_path, metric="val/acc_best", direction="maximize")
    assert [j["status"] for j in jobs] == ["completed", "failed", "completed", "interrupted"]
    markdown = (tmp_path / "summary.md").read_text()
    assert "Best (maximize `val/acc_best`): job 2, 0.7" in markdown
    assert "Common overrides: `model=lenet`" in markdown
    assert "| 1 | failed (CnnZooError: bad value) | 0.2 |" in markdown
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert rows[1]["error"] == "CnnZooError: bad value" and rows[3]["status"] == "interrupted"


def test_optuna_search_records_failed_trials_and_resumes(mnist_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "search"
    storage = f"sqlite:///{sweep}/optuna.db"
    # lr=-1.0 makes the optimizer refuse to build: a failing trial, which must not end the search.
    search = [
        "hparams_search=mnist_optuna", f"hydra.sweep.dir={sweep}", "hydra.sweeper.sampler.seed=8", "logger=none",
        "model=lenet", "optimizer.weight_decay=0", "optimizer.lr=choice(0.001,-1.0)", "hydra.sweeper.grace_period=1",
        *TINY,
    ]  # fmt: skip
    first = run_cli(mnist_root, *search, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr[-3000:]
    study = optuna.load_study(study_name="mnist_optuna", storage=storage)
    states = [t.state for t in study.trials]
    assert len(states) == 2
    assert optuna.trial.TrialState.FAIL in states and optuna.trial.TrialState.COMPLETE in states
    for trial in study.trials:
        folder = job_folder(sweep, trial.number)
        # named by the searched parameter, without those the command line fixed (model, batch size, weight decay)
        assert folder.name == f"{trial.number}_optimizer.lr={trial.params['optimizer.lr']}"
        outcome = json.loads((folder / "job.json").read_text())
        completed = trial.state == optuna.trial.TrialState.COMPLETE
        assert outcome["status"] == ("completed" if completed else "failed")
        if completed:
            metrics = json.loads((folder / "metrics.json").read_text())
            assert trial.value == pytest.approx(metrics["val/acc_best"])  # the objective is optimized_metric
        else:
            assert "Invalid learning rate" in outcome["error"]
    assert (sweep / "optimization_results.yaml").is_file()

    # A search killed mid-trial leaves it RUNNING and silent; rerunning in the same folder finishes the study.
    study.ask()
    time.sleep(1.5)  # past the grace period: no worker is alive to run it
    job0 = (job_folder(sweep, 0) / "job.json").read_text()
    second = run_cli(mnist_root, *search, "hydra.sweeper.n_trials=4")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "trial 2 was interrupted" in second.stderr + second.stdout
    study = optuna.load_study(study_name="mnist_optuna", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]  # n_trials is the study's total
    assert study.trials[2].state == optuna.trial.TrialState.FAIL
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    assert (job_folder(sweep, 3) / "job.json").is_file()  # the new trial got a new folder...
    assert (job_folder(sweep, 0) / "job.json").read_text() == job0  # ...and the first ones were not overwritten
    assert len([p for p in sweep.iterdir() if job_number(p) == 0]) == 1
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "3"]  # trial 2 died before Hydra made its folder
    settings = json.loads((sweep / "sweep.json").read_text())  # what the sweep page reads the study with
    assert settings["storage"] == storage and settings["direction"] == "maximize"
    page = (sweep / "report.html").read_text()
    assert 'id="optuna-history"' in page and "study <code>mnist_optuna</code>" in page and "4 trials" in page
    assert page.count('<tr class="job') == 3 and "Invalid learning rate" in page


def test_slurm_launcher_config_composes_where_the_plugin_is_installed() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the optional `slurm` extra is not installed")
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cnn_zoo.cli.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert cfg.hydra.launcher.tasks_per_node == 1 and cfg.hydra.launcher.timeout_min == 240


def test_the_median_pruner_stops_a_trial_that_lags_after_an_epoch(mnist_root: Path, tmp_path: Path) -> None:
    """A first search completes a learning trial; rerun with lr=0, the second trial lags and is pruned."""
    sweep = tmp_path / "search"
    search = [
        "hparams_search=mnist_optuna", f"hydra.sweep.dir={sweep}", "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0", "logger=none",
        "model=lenet", "optimizer.weight_decay=0", *[a for a in TINY if "max_epochs" not in a], "trainer.max_epochs=3",
    ]  # fmt: skip
    first = run_cli(mnist_root, *search, "optimizer.lr=0.003", "hydra.sweeper.n_trials=1")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli(mnist_root, *search, "optimizer.lr=0.0", "hydra.sweeper.n_trials=2")
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="mnist_optuna", storage=f"sqlite:///{sweep}/optuna.db")
    learned, lagging = study.trials
    assert learned.state == optuna.trial.TrialState.COMPLETE and sorted(learned.intermediate_values) == [0, 1, 2]
    assert lagging.state == optuna.trial.TrialState.PRUNED
    assert list(lagging.intermediate_values) == [0]  # stopped after its first epoch
    outcome = json.loads((job_dir(sweep, 1) / "job.json").read_text())
    assert outcome["status"] == "pruned" and "pruned after epoch 0" in outcome["error"]
    assert "1 pruned" in (sweep / "summary.md").read_text()
