"""Hydra callback: a job's files to its MLflow run once the job is over (registered in conf/hydra/default.yaml).

After `train`: the run folder (metrics.json, data.json, the config, the log, its reports...) without
checkpoints (`logger.mlflow.log_model=true` uploads those) nor the other loggers' folders. After `export`:
the exported model and its sidecar, to the run that trained the checkpoint. After a sweep: its summary
and results, to the sweep's parent run. Loads nothing heavy unless the folder names an MLflow run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

RECORD = "mlflow.json"
SKIPPED_DIRS = {"checkpoints", "tensorboard", "csv", "wandb", "mlruns", "mlartifacts", ".submitit"}
MAX_BYTES = 50 * 2**20  # a larger file (a cache, a dump) stays local
SWEEP_FILES = ("summary.md", "summary.csv", "optimization_results.yaml", "multirun.yaml")


@contextmanager
def quiet_retries() -> Iterator[None]:
    """urllib3's "Retrying ..." warnings silenced during one MLflow call: a failure is said once, by `lose`."""
    pool = logging.getLogger("urllib3.connectionpool")
    level = pool.level
    pool.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pool.setLevel(level)


def read_record(folder: Path) -> dict[str, Any] | None:
    path = folder / RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("run_id") and not record.get("lost") else None


def run_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not SKIPPED_DIRS & set(rel.parts[:-1]) and path.stat().st_size <= MAX_BYTES:
            files.append(path)
    return files


def upload(record: dict[str, Any], run_id: str, files: list[Path], base: Path, prefix: str = "") -> None:
    """Each file to `run_id` under its path relative to `base`; a failure is one warning, never an error."""
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(record["tracking_uri"])
        with quiet_retries():
            for path in files:
                parts = [prefix, *path.parent.relative_to(base).parts]
                client.log_artifact(run_id, str(path), "/".join(p for p in parts if p) or None)
    except Exception as err:  # a tracking server gone away must not fail a finished job
        lines = str(err).strip().splitlines()
        log.warning("MLflow: files of %s not uploaded to run %s (%s: %s)", base, run_id, type(err).__name__,
                    lines[0][:200] if lines else "")  # fmt: skip
        return
    log.info("MLflow: %d files of %s uploaded to run %s", len(files), base, run_id)


class TrackedRunFiles(Callback):
    """After a job, its files to the MLflow run named in the run folder's mlflow.json."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        output_dir = Path(config.hydra.runtime.output_dir)
        task = OmegaConf.select(config, "task_name", default=None)
        if task == "export":
            self.exported(config, output_dir, job_return)
        elif (record := read_record(output_dir)) is not None:
            upload(record, record["run_id"], run_files(output_dir), output_dir)

    @staticmethod
    def exported(config: DictConfig, output_dir: Path, job_return: JobReturn) -> None:
        ckpt = OmegaConf.select(config, "ckpt_path", default=None)
        if job_return.status != JobStatus.COMPLETED or not ckpt:
            return
        run_dir = Path(str(ckpt)).resolve().parent.parent  # <run>/checkpoints/<name>.ckpt
        if (record := read_record(run_dir)) is None:
            return
        name = str(OmegaConf.select(config, "name", default="model"))
        model_dir = Path(str(OmegaConf.select(config, "output_dir", default=output_dir)))
        files = sorted(p for p in model_dir.glob(f"{name}.*") if p.is_file())
        upload(record, record["run_id"], files, model_dir, prefix="model")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = (read_record(p) for p in sweep_dir.iterdir() if p.is_dir()) if sweep_dir.is_dir() else iter(())
        record = next((r for r in records if r and r.get("parent_run_id")), None)
        if record is not None:
            files = [sweep_dir / f for f in SWEEP_FILES if (sweep_dir / f).is_file()]
            upload(record, record["parent_run_id"], files, sweep_dir)
