"""Multirun bookkeeping: a summary of every job of a sweep (the resumable Optuna sweeper is in
`hydra_plugins.cnn_zoo_sweeper`, where Hydra requires sweeper plugins to live).

`SweepSummary` is a Hydra callback (registered in `conf/hydra/default.yaml`). After each job it records the
job's outcome in `<job>/job.json`, then rewrites `summary.csv` and `summary.md` in the sweep folder from what
the job folders hold (`.hydra/overrides.yaml`, `metrics.json`, `job.json`). Rebuilding from disk keeps the
summary right when a sweep stops half-way (the basic sweeper raises after a failed job), runs jobs in parallel,
or is resumed in the same folder. It also (re)writes the sweep's page, `report.html` (`cnn_zoo.reporting.sweep_page`).

Job folders are named `<job number>_<the job's swept overrides>` (`3_model=lenet,optimizer.lr=0.001`, the
resolver `${cnn_zoo.job_folder:...}` of `conf/hydra/default.yaml`), so a person tells them apart in a listing and
in TensorBoard; the number in front keeps them unique and ordered.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cnn_zoo.runtime.atomic import write_atomic
from cnn_zoo.runtime.errors import one_line

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("val/", "test/")  # the markdown table's metric columns; the CSV has every metric
SWEEP_FILE = "sweep.json"  # the sweep's metric, direction and Optuna study, written when it starts


def is_multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


# keys never in a job folder's name: where things are written, and the sweep's own settings
NOT_IN_FOLDER_NAME = ("hparams_search", "paths.data_dir", "paths.log_dir", "paths.cache_dir", "ckpt_path", "resume")
FOLDER_NAME_LENGTH = 100  # characters of overrides after the job number (file systems allow 255)
JOB_FOLDER = re.compile(r"^(\d+)(?:_.*)?$")
swept_keys: set[str] | None = None  # the sweep's varying keys, set in `SweepSummary.on_multirun_start`


def sweep_keys(config: DictConfig) -> set[str]:
    """The keys a sweep varies: its command line's sweep overrides (`a=1,2`, `choice(...)`) and Optuna's params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=[]) or []]
    parsed = OverridesParser.create().parse_overrides(task)
    keys = {o.key_or_group for o in parsed if o.is_sweep_override()}
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    if isinstance(params, DictConfig):  # Optuna's search space, less what the command line fixes
        keys |= {str(k) for k in params} - {o.key_or_group for o in parsed if not o.is_sweep_override()}
    return keys


def job_folder(num: Any, overrides: Any) -> str:
    """`<num>_<key=value,...>`: the job's overrides of the swept keys (all of them where the sweep is not known:
    a launcher in another process), made safe for a folder name and cut to `FOLDER_NAME_LENGTH` characters."""
    kept = []
    for item in [str(o) for o in overrides or []]:
        key = item.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra.") or key in NOT_IN_FOLDER_NAME:
            continue
        if swept_keys is not None and key not in swept_keys:
            continue
        kept.append(item.lstrip("+~"))
    name = re.sub(r"[^\w.,=+-]+", "-", ",".join(sorted(kept)))[:FOLDER_NAME_LENGTH].rstrip("-.,")
    return f"{num}_{name}" if name else str(num)


def job_number(folder: Path) -> int | None:
    match = JOB_FOLDER.match(folder.name)
    return int(match.group(1)) if match else None


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
        "job": job_number(folder),
        "folder": folder.name,
        "status": recorded.get("status") or status.get("status", default),
        "overrides": overrides,
        "metrics": metrics,
        "error": status.get("error", ""),
    }


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    folders = [p for p in sweep_dir.iterdir() if p.is_dir() and job_number(p) is not None] if sweep_dir.is_dir() else []
    return [read_job(p) for p in sorted(folders, key=lambda p: (job_number(p), p.name))]


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


def sweep_settings(config: DictConfig) -> dict[str, Any]:
    """What the sweep page needs of the sweep's config (Optuna's sweeper saves no `multirun.yaml`): the metric,
    the direction, and the Optuna storage URL and study name when there is a study."""
    settings: dict[str, Any] = {
        "optimized_metric": OmegaConf.select(config, "optimized_metric", default=None),
        "direction": sweep_direction(config),
        "swept_keys": sorted(swept_keys) if swept_keys is not None else None,
    }
    for key in ("storage", "study_name"):
        try:
            value = OmegaConf.select(config, f"hydra.sweeper.{key}", default=None)
        except Exception:  # an unresolvable value: the page goes without the study
            value = None
        settings[key] = value if isinstance(value, str) else None
    return settings


def write_summary(sweep_dir: Path, metric: str | None = None, direction: str | None = None) -> list[dict[str, Any]]:
    """(Re)write `summary.csv` and `summary.md` in `sweep_dir` from its job folders; returns the rows."""
    jobs = collect_jobs(sweep_dir)
    if jobs:
        write_atomic(sweep_dir / "summary.csv", summary_csv(jobs))
        write_atomic(sweep_dir / "summary.md", summary_markdown(jobs, sweep_dir.name, metric, direction))
    return jobs


class SweepSummary(Callback):
    """Hydra callback: `job.json` per job, `summary.csv`/`summary.md`/`report.html` per sweep (multirun only)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global swept_keys
        try:
            swept_keys = sweep_keys(config)
        except Exception as err:  # a name is a convenience: every override goes into it then
            log.warning("job folders named by all their overrides: %s", err)
            swept_keys = None
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(sweep_dir / SWEEP_FILE, json.dumps(sweep_settings(config), indent=2) + "\n")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        if job_return.status == JobStatus.COMPLETED:
            outcome = {"status": "completed", "return_value": job_return._return_value}
        else:  # an Optuna trial stopped by its pruner is no failure (optuna is not imported for that)
            pruned = type(job_return._return_value).__name__ == "TrialPruned"
            outcome = {"status": "pruned" if pruned else "failed", "error": one_line(job_return._return_value)}
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
        from cnn_zoo.reporting.sweep_page import write_sweep_page

        metric = OmegaConf.select(config, "optimized_metric", default=None)
        jobs = write_summary(Path(config.hydra.sweep.dir), metric, sweep_direction(config))
        if jobs:
            write_sweep_page(Path(config.hydra.sweep.dir))
        return jobs
