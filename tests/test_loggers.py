"""Loggers beyond the run folder: `tags` for every logger, W&B offline without a key, a missing extra."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig

from cnn_zoo.tracking.loggers import prepare_loggers
from cnn_zoo.training.pipeline import instantiate
from tests.test_sweeps import TINY

ONE_BATCH = [a for a in TINY if "max_epochs" not in a] + [
    "trainer.max_epochs=1",
    *(f"trainer.limit_{s}_batches=1" for s in ("train", "val", "test")),
]


def run_code(
    mnist_root: Path, code: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "CNN_ZOO_DATA_DIR": str(mnist_root), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=600,
                          cwd=cwd)  # fmt: skip


def test_tags_reach_tensorboard_and_csv(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = compose_cfg("logger=many", "tags=[baseline,team_a]")
    loggers = prepare_loggers([instantiate(c, "logger") for c in cfg.logger.values()], cfg)
    for logger in loggers:
        logger.save()
    run = Path(cfg.paths.output_dir)
    assert yaml.safe_load((run / "csv" / "hparams.yaml").read_text())["tags"] == ["baseline", "team_a"]
    assert yaml.safe_load((run / "tensorboard" / "hparams.yaml").read_text())["tags"] == ["baseline", "team_a"]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))  # the text `tags` in TensorBoard's Text tab


def test_a_missing_extra_is_one_line_naming_it(mnist_root: Path, tmp_path: Path) -> None:
    args = ["logger=mlflow", f"hydra.run.dir={tmp_path / 'run'}", *ONE_BATCH]
    code = (
        "import sys; sys.modules['mlflow'] = None; "  # as if the `mlflow` extra were not installed
        f"sys.argv = ['cnn-zoo-train', *{args!r}]; from cnn_zoo.train import main; main()"
    )
    result = run_code(mnist_root, code)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: logger=mlflow needs the `mlflow` extra: pip install 'cnn_zoo[mlflow]' (or pip install "
                      "mlflow)"], result.stderr[-2000:]  # fmt: skip
    assert "Traceback" not in result.stderr


def test_wandb_logs_offline_without_an_api_key(mnist_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("wandb", reason="the `wandb` extra is not installed (pip install -e '.[wandb]')")
    run_dir = tmp_path / "run"
    args = ["logger=[csv,wandb]", "tags=[offline_test]", f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}",
            *ONE_BATCH]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path), "CNN_ZOO_DATA_DIR": str(mnist_root)}  # no ~/.netrc with a key
    result = subprocess.run([sys.executable, "-m", "cnn_zoo.train", *args], capture_output=True, text=True, env=env,
                            timeout=600, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    said = [line for line in (result.stdout + result.stderr).splitlines() if "W&B: no API key" in line]
    assert len(said) == 1, result.stdout[-3000:]
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb")), list((run_dir / "wandb").iterdir())
    assert (run_dir / "metrics.json").is_file()


def test_an_unreachable_tracking_server_is_one_warning_and_then_silence(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed")
    from tests.servers import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # restored after the test
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    from cnn_zoo.tracking.loggers import MLflowTracker

    tracker = MLflowTracker(tracking_uri=f"http://127.0.0.1:{free_port()}", experiment_name="nowhere")
    with caplog.at_level("WARNING"):
        tracker.log_hyperparams({"optimizer": {"lr": 0.1}})
        tracker.log_metrics({"val/acc": 0.5}, step=0)
        tracker.finalize("success")
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "failed while starting the run" in said[0], said
    assert tracker.lost and tracker.run_id is None
