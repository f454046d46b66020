"""`<sweep>/report.html`: every job of a multirun or Optuna search on one page.

A sortable table of the jobs (their varying overrides, val/test metrics, duration, status), the best job marked,
the validation curves of every job overlaid, and for an Optuna search the optimisation history and the
parameter importances, read from the stored study through Optuna's public API (`optuna.load_study` with the
storage URL of the sweep's `multirun.yaml`). Rebuilt from the job folders, so it is right for a sweep that
stopped half-way or was resumed; `cnn-zoo-report <sweep>` writes it again.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cnn_zoo.reporting import figures
from cnn_zoo.reporting.run_page import (
    PAGE,
    monitor_of,
    number,
    read_json,
    read_scalars,
    read_yaml,
    render,
    seconds_text,
)
from cnn_zoo.search.sweeps import SUMMARY_METRICS, SWEEP_FILE, best_job, collect_jobs

log = logging.getLogger(__name__)

STATUS_WORDS = {"completed": "finished"}  # job.json's word, and the page's


def sweep_settings(sweep_dir: Path) -> dict[str, Any]:
    """The sweep's metric, direction and Optuna storage: `sweep.json` (`SweepSummary` writes it as the sweep
    starts), else Hydra's `multirun.yaml` (the basic sweeper's; `${hydra.sweep.dir}` replaced by the folder)."""
    saved = read_json(sweep_dir / SWEEP_FILE)
    if isinstance(saved, dict):
        return saved
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return {}
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # a damaged file: the page goes without the sweep's settings
        return {}
    sweeper = (raw.get("hydra") or {}).get("sweeper") or {}
    storage = sweeper.get("storage")
    direction = sweeper.get("direction")
    return {
        "optimized_metric": raw.get("optimized_metric"),
        "direction": direction if isinstance(direction, str) else None,
        "storage": storage.replace("${hydra.sweep.dir}", str(sweep_dir)) if isinstance(storage, str) else None,
        "study_name": sweeper.get("study_name"),
    }


def objective(settings: dict[str, Any]) -> tuple[str | None, str | None]:
    """The sweep's metric and direction: the sweeper's (Optuna), else the metric's own sense (loss: minimise)."""
    metric, direction = settings.get("optimized_metric"), settings.get("direction")
    if metric and direction not in ("maximize", "minimize"):
        direction = "minimize" if "loss" in str(metric) else "maximize"
    return (str(metric) if metric else None), (str(direction) if direction else None)


def optuna_section(settings: dict[str, Any], direction: str | None, metric: str | None) -> dict:
    """History and importances of the stored study, or a note saying why there are none."""
    storage, name = settings.get("storage"), settings.get("study_name")
    if not storage:
        return {}
    try:
        import optuna
    except ImportError:
        return {"note": "the search's study is not shown: optuna is not installed (the `hpo` extra)"}
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception as err:  # no such study or an unreadable storage: the table still stands
        return {"note": f"study {name!r} not read from {storage}: {type(err).__name__}: {err}"}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    complete = [t for t in complete if t.value is not None and not math.isnan(t.value)]
    section: dict[str, Any] = {"study": study.study_name, "storage": storage, "trials": len(study.trials)}
    history = figures.history_figure(
        [t.number for t in complete], [float(t.value) for t in complete], direction != "minimize", metric or "value"
    )
    if history is not None:
        section["history"] = figures.data_uri(history)
    if len(complete) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study)
        except Exception as err:  # too few distinct values, or the evaluator's own dependency is missing
            section["importance_note"] = f"parameter importances not computed: {type(err).__name__}: {err}"
        else:
            figure = figures.importance_figure({k: float(v) for k, v in importances.items()})
            if figure is not None:
                section["importances"] = figures.data_uri(figure)
    else:
        section["importance_note"] = "parameter importances need at least two completed trials"
    return section


def job_status(job: dict[str, Any]) -> str:
    status = job["metrics"].get("status") if isinstance(job["metrics"].get("status"), str) else None
    return status or STATUS_WORDS.get(job["status"], job["status"])


def describe_sweep(sweep_dir: Path) -> dict[str, Any]:
    jobs = collect_jobs(sweep_dir)
    settings = sweep_settings(sweep_dir)
    metric, direction = objective(settings)
    best = best_job(jobs, metric, direction)
    known = [j for j in jobs if j["overrides"]]
    keys = sorted({k for j in known for k in j["overrides"]})
    values = {k: {j["overrides"].get(k) for j in known} for k in keys}
    common = [f"{k}={next(iter(v))}" for k, v in values.items() if len(v) == 1 and None not in v]
    varying = [k for k, v in values.items() if len(v) > 1 or None in v]
    if not varying and len(jobs) == 1:
        varying = keys
    metric_keys = sorted({k for j in jobs for k in j["metrics"] if k.startswith(SUMMARY_METRICS)})
    if metric and metric in metric_keys:
        metric_keys = [metric] + [k for k in metric_keys if k != metric]
    rows, curves_acc, curves_loss = [], {}, {}
    score = "val/acc"  # the overlaid score: the jobs' monitored metric unless that is the loss
    for job in jobs:
        folder = sweep_dir / job["folder"]
        record = read_json(folder / "run.json") or {}
        duration = record.get("duration_seconds")
        label = f"{job['job']}: " + ",".join(f"{k}={job['overrides'].get(k, '')}" for k in varying)
        series, _ = read_scalars(folder) if (folder / "tensorboard").is_dir() else ({}, {})
        monitor = monitor_of(read_yaml(folder / ".hydra" / "config.yaml") or {})
        if monitor.metric.startswith("val/") and monitor.metric != "val/loss":
            score = monitor.metric
        curves_acc[label] = series.get(score, [])
        curves_loss[label] = series.get("val/loss", [])
        rows.append(
            {
                "job": job["job"],
                "folder": job["folder"],
                "page": f"{job['folder']}/{PAGE}" if (folder / PAGE).is_file() else None,
                "status": job_status(job),
                "error": job["error"],
                "overrides": [job["overrides"].get(k, "") for k in varying],
                "metrics": [(job["metrics"].get(k), number(job["metrics"].get(k))) for k in metric_keys],
                "duration": duration,
                "duration_text": seconds_text(float(duration)) if duration is not None else "",
                "best": best is not None and job["job"] == best["job"],
                "label": label,
            }
        )
    best_label = next((r["label"] for r in rows if r["best"]), None)
    overlay = []
    for what, curves in ((score, curves_acc), ("val/loss", curves_loss)):
        fig = figures.overlay_figure(curves, what, best_label)
        if fig is not None:
            overlay.append((what, figures.data_uri(fig)))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {
        "title": sweep_dir.name,
        "folder": sweep_dir,
        "jobs": rows,
        "counts": counts,
        "varying": varying,
        "common": common,
        "metric_keys": metric_keys,
        "metric": metric,
        "direction": direction,
        "best": best,
        "overlay": overlay,
        "optuna": optuna_section(settings, direction, metric),
    }


def write_sweep_page(sweep_dir: str | Path) -> Path | None:
    """(Re)write `<sweep>/report.html`; failures are logged, never raised (a sweep's jobs matter more)."""
    try:
        return write_sweep_page_or_raise(Path(sweep_dir))
    except Exception as err:
        log.warning("sweep report.html not written: %s: %s", type(err).__name__, err)
        return None


def write_sweep_page_or_raise(sweep_dir: Path) -> Path:
    text = render("sweep.html.j2", sweep=describe_sweep(sweep_dir))
    path = sweep_dir / PAGE
    tmp = sweep_dir / f".{PAGE}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def is_sweep_folder(folder: Path) -> bool:
    return any((folder / n).is_file() for n in (SWEEP_FILE, "multirun.yaml")) or bool(collect_jobs(folder))
