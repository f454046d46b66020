"""`trainer=ddp_cpu`: two gloo processes train one run, whose files rank zero writes once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from cnn_zoo.cli.config import CONFIG_DIR
from cnn_zoo.runtime.distributed import HydraDDPStrategy, job_command
from tests.conftest import run_command


def test_ddp_cpu_trains_with_two_processes_into_one_run_folder(mnist_root: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    args = [
        "trainer=ddp_cpu",
        f"paths.log_dir={logs}",  # run folders go to <logs>/runs/<time>_<data>_<model>: one expected
        "data.download=false",
        "data.val_size=60",
        "data.batch_size=32",
        "trainer.max_epochs=2",
        "+trainer.enable_progress_bar=false",
        "callbacks.rich_progress_bar=null",
        "callbacks.model_summary=null",
    ]
    result = run_command("cnn_zoo.train", *args, data_dir=mnist_root, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "MEMBER: 2/2" in output and "Starting with 2 processes" in output

    (run,) = (logs / "runs").iterdir()  # the second process re-ran the job into the same folder
    assert sorted(p.name for p in logs.iterdir()) == ["runs"]
    assert [p.relative_to(logs) for p in logs.rglob("metrics.json")] == [run.relative_to(logs) / "metrics.json"]
    assert [p.parent.name for p in logs.rglob("config.yaml")] == [".hydra"]  # only rank zero saved the config
    assert (run / "train_rank1.log").is_file()  # rank one logged beside rank zero
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0 and "val/acc_best" in metrics
    assert len(list((run / "checkpoints").glob("epoch_*.ckpt"))) == 1
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) >= 1


def test_children_rerun_the_job_of_a_sweep_not_the_sweep(tmp_path: Path, monkeypatch) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=["trainer=ddp_cpu", "optimizer.lr=0.01"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    job_dir = tmp_path / "sweep" / "3"
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.runtime.output_dir = str(job_dir)
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.job.name = "train"
    HydraConfig.instance().set_config(cfg)
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "trainer=ddp_cpu", "optimizer.lr=0.01,0.1"])
    try:
        command, cwd = job_command(local_rank=1)
    finally:
        HydraConfig.instance().cfg = None
    assert cwd == str(tmp_path)
    assert command[-6:] == [
        "trainer=ddp_cpu",
        "optimizer.lr=0.01",  # this job's value, not the sweep's list
        f'hydra.run.dir="{job_dir}"',
        "hydra.mode=RUN",
        "hydra.output_subdir=null",
        "hydra.job.name=train_rank1",
    ]
    assert "optimizer.lr=0.01,0.1" not in command
    config = OmegaConf.load(Path(CONFIG_DIR) / "trainer" / "ddp_cpu.yaml")
    assert config.strategy._target_ == f"{HydraDDPStrategy.__module__}.{HydraDDPStrategy.__name__}"


@pytest.mark.parametrize(("status", "failed"), [("COMPLETED", False), ("FAILED", True)])
def test_the_hydra_callback_releases_each_jobs_distributed_state(
    monkeypatch: pytest.MonkeyPatch, status: str, failed: bool
) -> None:
    from hydra.core.utils import JobReturn, JobStatus

    from cnn_zoo.runtime import distributed
    from cnn_zoo.search.job_cleanup import DistributedCleanup

    released: list[bool] = []
    monkeypatch.setattr(distributed, "release", lambda failed=False: released.append(failed))
    DistributedCleanup().on_job_end(OmegaConf.create({}), JobReturn(status=JobStatus[status]))
    assert released == [failed]
