"""Experiment trackers beside the run folder: MLflow and Weights & Biases (`logger=mlflow`, `logger=wandb`).

Tracking never costs a run: a tracking server that cannot be reached (at the start or mid-run) is said in one
warning line, and the run goes on with its local files (metrics.json, CSV/TensorBoard logs) complete. The
MLflow run is named in `<run>/mlflow.json`, which `cnn_zoo.tracking.job_files` reads to upload the run's files
after the job (and an exported model after `cnn_zoo.export`).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnn_zoo.callbacks.inspection import flatten
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.tracking.job_files import quiet_retries

log = logging.getLogger(__name__)

RECORD = "mlflow.json"  # in the run folder: where its MLflow run is
SWEEPER = "hydra_plugins.cnn_zoo_sweeper.resumable_optuna.ResumableOptunaSweeper"


def require(module: str, extra: str, what: str) -> None:
    """A missing optional dependency as one line naming the extra that brings it."""
    try:
        importlib.import_module(module)
    except ImportError:
        hint = f"pip install 'cnn_zoo[{extra}]' (or pip install {extra})"
        raise CnnZooError(f"{what} needs the `{extra}` extra: {hint}") from None


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def job_context() -> dict[str, Any]:
    """What Hydra knows of this job: output folder, overrides, and its sweep (folder, number, Optuna study)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    output_dir = OmegaConf.select(hc, "runtime.output_dir", default=None, throw_on_missing=False)
    if output_dir is None:  # a config composed outside a run (tests, notebooks)
        return {}
    context: dict[str, Any] = {
        "output_dir": str(Path(output_dir).resolve()),
        "overrides": list(hc.overrides.task),
        "experiment": hc.runtime.choices.get("experiment"),
    }
    if hc.mode == RunMode.MULTIRUN:
        context |= {"sweep_dir": str(Path(hc.sweep.dir).resolve()), "job": int(hc.job.num)}
        if hc.sweeper.get("_target_") == SWEEPER:
            context["study"] = hc.sweeper.get("study_name")
    return context


def default_experiment(context: Mapping[str, Any]) -> str:
    """An Optuna search: its study (shared by its workers and reruns); a sweep: its folder; else the experiment."""
    if context.get("study"):
        return str(context["study"])
    if context.get("sweep_dir"):
        return f"sweep {Path(context['sweep_dir']).name}"
    return str(context.get("experiment") or "cnn_zoo")


def default_run_name(context: Mapping[str, Any]) -> str | None:
    """A sweep's job: `<sweep folder>-<job number>`; a run: its folder's name."""
    if context.get("sweep_dir"):
        return f"{Path(context['sweep_dir']).name}-{context['job']}"
    return Path(context["output_dir"]).name if context.get("output_dir") else None


def config_params(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config, flat (`optimizer.lr`: the keys read like Hydra overrides)."""
    try:
        return flatten(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as err:  # an unused, unresolvable value must not fail the run
        log.warning("config not logged as parameters: %s", err)
        return {}


class MLflowTracker(MLFlowLogger):
    """Lightning's MLFlowLogger that survives its server, logs the flat resolved config and names its run.

    No `tracking_uri` (nor MLFLOW_TRACKING_URI): a local store, `sqlite:///<local_store>/mlflow.db` with
    artifacts in `<local_store>/mlartifacts`. In a sweep every job is a run of one experiment, nested under
    a parent run named after the sweep (which also gets the sweep's summary).
    """

    def __init__(
        self,
        experiment_name: str | None = None,
        run_name: str | None = None,
        tracking_uri: str | None = None,
        local_store: str = "outputs",
        log_model: bool | str = False,
        nest_sweeps: bool = True,
        http_retries: int = 2,
        http_timeout: float = 30,
        tags: Sequence[str] | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        require("mlflow", "mlflow", "logger=mlflow")
        self.context = job_context()
        store = Path(local_store).resolve()
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store / 'mlflow.db'}"
        if uri.startswith("sqlite:///"):
            store.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("artifact_location", (store / "mlartifacts").as_uri())
        if uri.startswith(("http://", "https://")):
            # MLflow's own defaults retry a dead server for minutes per call; the run should not wait that long.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(http_retries))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(http_timeout)))
        self.output_dir = Path(self.context.get("output_dir", "."))
        super().__init__(
            experiment_name=experiment_name or default_experiment(self.context),
            run_name=run_name or default_run_name(self.context),
            tracking_uri=uri,
            log_model=log_model,
            **kwargs,
        )
        self.nest_sweeps = nest_sweeps
        self.extra_tags: dict[str, str] = {}
        self.set_tags(tags or [])
        self.logged_params: set[str] = set()
        self.lost: str | None = None
        self.parent_run_id: str | None = None

    def set_tags(self, tags: Sequence[str] | Mapping[str, Any]) -> None:
        """`tags=[a, b]` as MLflow tags `a: true`, `b: true` (and `cnn_zoo.tags: a,b`); a mapping as given."""
        pairs = dict(tags) if isinstance(tags, Mapping) else {str(t): "true" for t in tags}
        self.extra_tags |= {k: str(v) for k, v in pairs.items()}
        if pairs and not isinstance(tags, Mapping):
            self.extra_tags["cnn_zoo.tags"] = ",".join(str(t) for t in tags)

    # -- the server may go away: one warning, then the run goes on without it ---------------------------------
    def guarded(self, what: str, call: Callable[[], Any]) -> Any:
        if self.lost is not None:
            return None
        try:
            with quiet_retries():
                return call()
        except Exception as err:  # MlflowException, requests' ConnectionError...: tracking must not end the run
            self.lose(what, err)
            return None

    def lose(self, what: str, err: BaseException) -> None:
        if self.lost is not None:  # said once: a call nested in a failed one fails too
            return
        self.lost = one_line(err)
        log.warning("MLflow tracking at %s failed while %s (%s): the run goes on without it; its local files "
                    "(metrics.json, logs) stay complete", self._tracking_uri, what, self.lost)  # fmt: skip
        self.write_record()

    # -- the run ---------------------------------------------------------------------------------------------
    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if not self._initialized and self.lost is None:
            self.guarded("starting the run", self.start_run)
        return self._mlflow_client

    def start_run(self) -> None:
        from mlflow.exceptions import MlflowException

        client = self._mlflow_client
        found = client.get_experiment_by_name(self._experiment_name)
        if found is None or found.lifecycle_stage == "deleted":
            try:
                self._experiment_id = client.create_experiment(self._experiment_name, self._artifact_location)
            except MlflowException:  # another job or worker created it meanwhile
                self._experiment_id = client.get_experiment_by_name(self._experiment_name).experiment_id
        else:
            self._experiment_id = found.experiment_id
        tags = {**self.job_tags(), **self.extra_tags, **(self.tags or {})}
        if self.nest_sweeps and self.context.get("sweep_dir"):
            self.parent_run_id = sweep_parent_run(client, self._experiment_id, self.context)
            tags["mlflow.parentRunId"] = self.parent_run_id
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        if self._run_name:
            tags[MLFLOW_RUN_NAME] = self._run_name
        from lightning.pytorch.loggers.mlflow import _get_resolve_tags

        run = client.create_run(experiment_id=self._experiment_id, tags=_get_resolve_tags()(tags))
        self._run_id = run.info.run_id
        self._initialized = True
        self.write_record()
        log.info("MLflow run %s in experiment %r at %s", self._run_id, self._experiment_name, self._tracking_uri)

    def job_tags(self) -> dict[str, str]:
        c = self.context
        tags = {"cnn_zoo.run_folder": str(self.output_dir)} if c else {}
        if c.get("overrides"):
            tags["cnn_zoo.overrides"] = " ".join(c["overrides"])[:5000]
        if c.get("sweep_dir"):
            tags |= {"cnn_zoo.sweep": c["sweep_dir"], "cnn_zoo.job": str(c["job"])}
        if c.get("study"):
            tags |= {"optuna.study": str(c["study"]), "optuna.trial": str(c["job"])}
        return tags

    def write_record(self) -> None:
        if not self.context or rank_zero_only.rank != 0:
            return
        record = {
            "tracking_uri": self._tracking_uri,
            "experiment_name": self._experiment_name,
            "experiment_id": self._experiment_id,
            "run_id": self._run_id,
            "parent_run_id": self.parent_run_id,
            "lost": self.lost,
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")

    @property
    def run_id(self) -> str | None:
        _ = self.experiment
        return self._run_id

    @property
    def name(self) -> str | None:
        return self._experiment_name

    @property
    def version(self) -> str | None:
        return self.run_id

    # -- what Lightning logs ------------------------------------------------------------------------------
    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """Flat `a.b` keys, logged once each (MLflow refuses to change a parameter)."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        if not isinstance(params, Mapping):
            params = vars(params)
        flat = flatten({k: v for k, v in params.items()}) if params else {}
        new = {re.sub(r"[^\w\-. /]", "_", k)[:250]: v for k, v in flat.items()}
        new = {k: v for k, v in new.items() if k not in self.logged_params}
        batch = [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in sorted(new.items())]
        for start in range(0, len(batch), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = batch[start : start + MAX_PARAMS_TAGS_PER_BATCH]
            self.guarded("logging parameters", lambda chunk=chunk: self.experiment.log_batch(
                run_id=self.run_id, params=chunk, **self._log_batch_kwargs))  # fmt: skip
        if self.lost is None:
            self.logged_params |= set(new)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.guarded("logging metrics", lambda: super(MLflowTracker, self).log_metrics(metrics, step))

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.guarded("finishing the run", lambda: super(MLflowTracker, self).finalize(status))

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.guarded("uploading a checkpoint", lambda: super(MLflowTracker, self).after_save_checkpoint(
            checkpoint_callback))  # fmt: skip


def sweep_parent_run(client: Any, experiment_id: str, context: Mapping[str, Any]) -> str:
    """The run that holds a sweep's jobs in MLflow's UI: found by its tag, made by the first job.

    Jobs of parallel workers may both make one: the oldest is kept, a later duplicate deleted.
    """
    key = context.get("study") or context["sweep_dir"]
    query = f"tags.`cnn_zoo.sweep_parent` = '{str(key).replace(chr(39), '')}'"

    def parents() -> list[Any]:
        return client.search_runs([experiment_id], filter_string=query, order_by=["attributes.start_time ASC"])

    found = parents()
    if found:
        return found[0].info.run_id
    name = f"study {key}" if context.get("study") else f"sweep {Path(context['sweep_dir']).name}"
    made = client.create_run(experiment_id, tags={"cnn_zoo.sweep_parent": str(key), "mlflow.runName": name,
                                                  "cnn_zoo.sweep": context["sweep_dir"]})  # fmt: skip
    client.set_terminated(made.info.run_id)
    oldest = parents()[0].info.run_id
    if oldest != made.info.run_id:
        client.delete_run(made.info.run_id)
    return oldest


class WandbTracker(WandbLogger):
    """Lightning's WandbLogger, offline (`wandb sync` uploads later) when no API key is configured."""

    def __init__(self, offline: bool | None = None, **kwargs: Any) -> None:
        require("wandb", "wandb", "logger=wandb")
        if offline is None:
            offline = not has_wandb_key() or os.environ.get("WANDB_MODE") == "offline"
            if offline:
                log.info("W&B: no API key (WANDB_API_KEY or `wandb login`): logging offline under %s; "
                         "`wandb sync` uploads it later", Path(kwargs.get("save_dir") or ".") / "wandb")  # fmt: skip
        super().__init__(offline=offline, **kwargs)


def has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def prepare_loggers(loggers: list[Logger], cfg: DictConfig) -> list[Logger]:
    """Every logger gets the run's `tags`; the trackers also get the flat resolved config as parameters."""
    tags = [str(t) for t in (cfg.get("tags") or [])]
    for logger in loggers:
        if isinstance(logger, MLflowTracker):
            logger.set_tags(tags)
            logger.log_hyperparams(config_params(cfg))
        elif isinstance(logger, WandbLogger):
            logger.log_hyperparams(config_params(cfg))
        elif tags and isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams({"tags": tags})
            logger.experiment.add_text("tags", ", ".join(tags))
        elif tags and isinstance(logger, CSVLogger):
            logger.log_hyperparams({"tags": tags})
    return loggers
