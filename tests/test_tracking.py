"""MLflow tracking against a real `mlflow server` on 127.0.0.1 (started and stopped here), W&B offline, tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import MlflowServer, job_dir, mlflow_server
from tests.test_sweeps import TINY

mlflow = pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed (pip install -e '.[mlflow]')")
from mlflow.tracking import MlflowClient  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# one batch per stage, the epochs each test asks for
ONE_BATCH = [a for a in TINY if not a.startswith("trainer.max_epochs")] + [
    f"trainer.limit_{stage}_batches=1" for stage in ("train", "val", "test")
]


def run_cli(mnist_root: Path, *args: str, module: str = "cnn_zoo.train") -> subprocess.CompletedProcess:
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(mnist_root)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)  # tests.servers
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=600, cwd=REPO
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as running:
        yield running


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "mlflow.json").read_text())


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def assert_metrics_match(client: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    logged = client.get_run(run_id).data.metrics
    assert {k for k in metrics if k.startswith(("val/", "test/"))} <= set(logged)
    for key in set(metrics) & set(logged):
        assert logged[key] == pytest.approx(metrics[key], rel=1e-6), key


def test_a_run_on_the_server_holds_config_metrics_tags_and_files(
    server: MlflowServer, mnist_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(
        mnist_root, "logger=[csv,mlflow]", f"logger.mlflow.tracking_uri={server.uri}", "logger.mlflow.log_model=true",
        "tags=[team_a,baseline]", "optimizer.lr=0.002", f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}",
        "trainer.max_epochs=2", *ONE_BATCH,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(server.uri)
    run = client.get_run(record(run_dir)["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "cnn_zoo"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert_metrics_match(client, run.info.run_id, metrics)
    epochs = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(epochs) == 2  # one point per epoch
    params = run.data.params
    assert params["optimizer.lr"] == "0.002" and params["seed"] == "42"
    assert params["model.net._target_"].endswith("LeNet")
    assert run.data.tags["team_a"] == "true" and run.data.tags["cnn_zoo.tags"] == "team_a,baseline"
    assert "optimizer.lr=0.002" in run.data.tags["cnn_zoo.overrides"]
    files = artifacts(client, run.info.run_id)
    assert {"metrics.json", "data.json", "train.log", ".hydra/config.yaml", ".hydra/overrides.yaml"} <= files
    assert any(f.endswith(".ckpt") for f in files), files  # log_model=true: the best checkpoint
    assert not any(f.startswith(("csv/", "checkpoints/")) for f in files)
    assert not (tmp_path / "mlflow.db").exists()  # a server given: no local store

    # An exported model goes to the run that trained its checkpoint.
    ckpt = next((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    export = run_cli(mnist_root, f"ckpt_path={ckpt}", "format=torchscript", f"hydra.run.dir={tmp_path / 'export'}",
                     module="cnn_zoo.export")  # fmt: skip
    assert export.returncode == 0, export.stderr[-3000:]
    assert {"model/model.pt", "model/model.json"} <= artifacts(client, run.info.run_id)


def test_a_sweep_is_one_experiment_with_a_run_per_job_under_a_parent(
    server: MlflowServer, mnist_root: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(
        mnist_root, "-m", "optimizer.lr=0.001,0.003", "logger=mlflow", f"logger.mlflow.tracking_uri={server.uri}",
        f"hydra.sweep.dir={sweep}", "tags=[sweep_test]", "trainer.max_epochs=1", *ONE_BATCH,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name(f"sweep {sweep.name}")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if "cnn_zoo.sweep_parent" in r.data.tags]
    children = sorted((r for r in runs if r not in parent), key=lambda r: int(r.data.tags["cnn_zoo.job"]))
    assert len(parent) == 1 and len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent[0].info.run_id}
    for job, (run, lr) in enumerate(zip(children, ("0.001", "0.003"), strict=True)):
        assert run.data.params["optimizer.lr"] == lr and run.data.tags["sweep_test"] == "true"
        assert run.info.run_name == f"{sweep.name}-{job}"
        assert_metrics_match(client, run.info.run_id, json.loads((job_dir(sweep, job) / "metrics.json").read_text()))
        assert "job.json" in artifacts(client, run.info.run_id)
    assert {"summary.md", "summary.csv"} <= artifacts(client, parent[0].info.run_id)


def test_a_server_that_dies_mid_run_costs_one_warning_and_no_metrics(
    mnist_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    with mlflow_server(tmp_path) as dying:
        killer = f"+callbacks.kill_server={{_target_:tests.servers.KillAtEpoch,pgid:{dying.process.pid},epoch:0}}"
        result = run_cli(
            mnist_root, "logger=[csv,mlflow]", f"logger.mlflow.tracking_uri={dying.uri}", killer,
            "trainer.max_epochs=3", f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}", *ONE_BATCH,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    warnings = [line for line in output.splitlines() if "WARNING" in line or "Warning" in line]
    tracking = [line for line in warnings if "mlflow" in line.lower() or "127.0.0.1" in line]
    assert len(tracking) == 1, "\n".join(warnings)
    assert "the run goes on without it" in tracking[0]
    assert "Traceback" not in output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/acc_best", "test/acc", "test/loss"} <= set(metrics)
    rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    assert len([r for r in rows if r and r.split(",")[0] != "epoch"]) >= 3  # the CSV log has every epoch
    assert record(run_dir)["lost"]


def test_an_optuna_search_is_one_experiment_named_after_its_study(
    server: MlflowServer, mnist_root: Path, tmp_path: Path
) -> None:
    pytest.importorskip("optuna", reason="the `hpo` extra is not installed")
    sweep = tmp_path / "search"
    result = run_cli(
        mnist_root, "hparams_search=mnist_optuna", "hydra.sweeper.study_name=tracked_study", "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}", "logger=mlflow", f"logger.mlflow.tracking_uri={server.uri}", "model=lenet",
        "trainer.max_epochs=1", *ONE_BATCH,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("tracked_study")
    runs = client.search_runs([experiment.experiment_id])
    trials = sorted((r for r in runs if "optuna.trial" in r.data.tags), key=lambda r: int(r.data.tags["optuna.trial"]))
    assert [r.data.tags["optuna.trial"] for r in trials] == ["0", "1"]
    for number, run in enumerate(trials):  # each trial's sampled values are its parameters
        overrides = (job_dir(sweep, number) / ".hydra" / "overrides.yaml").read_text()
        assert f"optimizer.lr={run.data.params['optimizer.lr']}" in overrides
    parent = [r for r in runs if "cnn_zoo.sweep_parent" in r.data.tags]
    assert len(parent) == 1 and "optimization_results.yaml" in artifacts(client, parent[0].info.run_id)
