"""Multirun bookkeeping: a summary of every job of a sweep (the resumable Optuna sweeper is in
`hydra_plugins.cnn_zoo_sweeper`, where Hydra requires sweeper plugins to live).

`SweepSummary` is a Hydra callback (registered in `conf/hydra/default.yaml`). After each job it records the
job's outcome in `<job>/job.json`, then rewrites `summary.csv` and `summary.md` in the sweep folder from what
the job folders hold (`.hydra/overrides.yaml`, `metrics.json`, `job.json`). Rebuilding from disk keeps the
summary right when a sweep stops half-way (the basic sweeper raises after a failed job), runs jobs in parallel,
or is resumed in the same folder.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("val/", "test/")  # the markdown table's metric columns; the CSV has every metric


def is_multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file, so parallel jobs never leave a half-written summary."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def read_job(folder: Path) -> dict[str, Any]:
    """One job folder as a row: number, status, overrides (`key -> value`), metrics, error."""
    overrides: dict[str, str] = {}
    overrides_file = folder / ".hydra" / "overrides.yaml"
    if overrides_file.is_file():
        for item in yaml.safe_load(overrides_file.read_text()) or []:
            key, _, value = str(item).partition("=")
            overrides[key] = value
    metrics_file, status_file = folder / "metrics.json", folder / "job.json"
    recorded = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metrics = {k: v for k, v in recorded.items() if isinstance(v, int | float)}  # a diverged run adds its status
    status = json.loads(status_file.read_text()) if status_file.is_file() else {}
    default = "completed" if metrics else "interrupted"  # no job.json: killed, or still running elsewhere
    return {
        "job": int(folder.name),
        "status": recorded.get("status") or status.get("status", default),
        "overrides": overrides,
        "metrics": metrics,
        "error": status.get("error", ""),
    }


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    folders = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()] if sweep_dir.is_dir() else []
    return [read_job(p) for p in sorted(folders, key=lambda p: int(p.name))]


def best_job(jobs: list[dict[str, Any]], metric: str | None, direction: str | None) -> dict[str, Any] | None:
    if not metric or direction not in ("maximize", "minimize"):
        return None
    scored = [j for j in jobs if isinstance(j["metrics"].get(metric), int | float)]
    if not scored:
        return None
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda j: j["metrics"][metric])


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def summary_csv(jobs: list[dict[str, Any]]) -> str:
    override_keys = sorted({k for j in jobs for k in j["overrides"]})
    metric_keys = sorted({k for j in jobs for k in j["metrics"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["job", "status", *override_keys, *metric_keys, "error"])
    for j in jobs:
        row = [j["job"], j["status"]]
        row += [j["overrides"].get(k, "") for k in override_keys]
        row += [j["metrics"].get(k, "") for k in metric_keys]
        writer.writerow([*row, j["error"]])
    return out.getvalue()


def summary_markdown(
    jobs: list[dict[str, Any]], title: str, metric: str | None = None, direction: str | None = None
) -> str:
    """Varying overrides and the val/test metrics per job; overrides shared by every job listed once above."""
    known = [j for j in jobs if j["overrides"]]  # an interrupted job may not have written its overrides
    override_keys = sorted({k for j in known for k in j["overrides"]})
    values = {k: {j["overrides"].get(k) for j in known} for k in override_keys}
    common = [f"`{k}={next(iter(v))}`" for k, v in values.items() if len(v) == 1 and None not in v]
    varying = [k for k, v in values.items() if len(v) > 1 or None in v]
    metric_keys = sorted({k for j in jobs for k in j["metrics"] if k.startswith(SUMMARY_METRICS)})
    if metric and metric in metric_keys:
        metric_keys = [metric] + [k for k in metric_keys if k != metric]
    lines = [
        f"# Sweep {title}",
        "",
        f"{len(jobs)} jobs: "
        + ", ".join(f"{sum(j['status'] == s for j in jobs)} {s}" for s in sorted({j["status"] for j in jobs})),
    ]
    if common:
        lines += ["", "Common overrides: " + " ".join(common)]
    best = best_job(jobs, metric, direction)
    if best is not None:
        lines += ["", f"Best ({direction} `{metric}`): job {best['job']}, {format_value(best['metrics'][metric])}"]
    header = ["job", "status", *varying, *metric_keys]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for j in jobs:
        error = j["error"] if len(j["error"]) <= 80 else j["error"][:77] + "..."
        cells = [str(j["job"]), j["status"] + (f" ({error})" if error else "")]
        cells += [j["overrides"].get(k, "") for k in varying]
        cells += [format_value(j["metrics"].get(k)) for k in metric_keys]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_direction(config: DictConfig) -> str | None:
    """`maximize`/`minimize` when the sweeper has one (Optuna), else None."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if direction is None:
        return None
    name = getattr(direction, "name", direction)
    return str(name) if isinstance(name, str) else None


def write_summary(sweep_dir: Path, metric: str | None = None, direction: str | None = None) -> list[dict[str, Any]]:
    """(Re)write `summary.csv` and `summary.md` in `sweep_dir` from its job folders; returns the rows."""
    jobs = collect_jobs(sweep_dir)
    if jobs:
        write_atomic(sweep_dir / "summary.csv", summary_csv(jobs))
        write_atomic(sweep_dir / "summary.md", summary_markdown(jobs, sweep_dir.name, metric, direction))
    return jobs


class SweepSummary(Callback):
    """Hydra callback: `job.json` per job, `summary.csv`/`summary.md` per sweep (multirun only)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        if job_return.status == JobStatus.COMPLETED:
            outcome = {"status": "completed", "return_value": job_return._return_value}
        else:
            outcome = {"status": "failed", "error": one_line(job_return._return_value)}
        if not isinstance(outcome.get("return_value"), int | float | type(None)):
            outcome["return_value"] = str(outcome["return_value"])
        write_atomic(job_dir / "job.json", json.dumps(outcome, indent=2) + "\n")
        self.summarise(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = self.summarise(config)
        if jobs:
            log.info("sweep summary: %s", Path(config.hydra.sweep.dir) / "summary.md")

    @staticmethod
    def summarise(config: DictConfig) -> list[dict[str, Any]]:
        metric = OmegaConf.select(config, "optimized_metric", default=None)
        return write_summary(Path(config.hydra.sweep.dir), metric, sweep_direction(config))
