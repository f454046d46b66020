"""`python -m cnn_zoo.train`: compose the config, fit, test the best checkpoint, write metrics.json."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from cnn_zoo.cli.config import CONFIG_DIR
from cnn_zoo.cli.config_checks import check_trainer_config
from cnn_zoo.cli.hydra_entry import hydra_command
from cnn_zoo.cli.run_folder import resume_arguments
from cnn_zoo.cli.run_logging import tidy_output
from cnn_zoo.runtime import memory, performance
from cnn_zoo.runtime.errors import CnnZooError, user_errors
from cnn_zoo.runtime.faults import run_faults

if TYPE_CHECKING:  # Lightning, torch and the pipeline load in train(): `--help` answers without them
    import lightning as L

log = logging.getLogger(__name__)
cpu_log = logging.getLogger("cnn_zoo.cpu_settings")  # to the log file, not the console


def train(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> dict[str, float]:
    """Fit, then test on the best checkpoint; returns the metrics written to `<run>/metrics.json`.

    `extra_callbacks` lets scripts (benchmarks) observe a run without a config of their own.
    """
    performance.expect_loader_workers(int(cfg.data.get("num_workers") or 0))  # before torch loads: OpenMP's waiting
    import lightning as L

    from cnn_zoo.callbacks.checkpointing import resume_checkpoint
    from cnn_zoo.callbacks.inspection import log_run_hparams
    from cnn_zoo.data import auto_batch_size
    from cnn_zoo.reporting.run_page import write_run_page
    from cnn_zoo.runtime.config_values import to_plain
    from cnn_zoo.runtime.faults import write_json
    from cnn_zoo.training import switches
    from cnn_zoo.training.pipeline import build_classifier, build_datamodule, build_trainer, scalar_metrics

    tidy_output()
    auto_batch = auto_batch_size.prepare(cfg)  # data.batch_size=auto: a number from here on
    check_trainer_config(cfg.trainer)
    switches.check_switches(cfg)
    if (cfg.get("extras") or {}).get("print_config"):
        switches.print_config_tree(cfg)  # on rank zero only
    # the command's CPU settings: in train.log only (conf/hydra/default.yaml sends this logger to the file)
    cpu_log.info("%s", performance.openmp_choice)
    cpu_log.info("%s", performance.flush_denormals(bool(cfg.get("flush_denormal", True))))
    cpu_log.info("%s", memory.memory_status())
    if (cuda_check := performance.cuda_check_by_runtime_without_devices()) is not None:
        cpu_log.info("%s", cuda_check)
    ckpt_path = resume_checkpoint(cfg.get("ckpt_path"), cfg.paths.output_dir)  # checked before Lightning reads it
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    training = bool(cfg.get("train", True))
    if training:
        model = build_classifier(cfg, datamodule.spec)
    else:  # train=false: the checkpoint's own classifier, tested below
        model = switches.tested_checkpoint_model(ckpt_path, cfg, datamodule.spec.class_names)
    switches.compile_network(model, cfg.get("compile"))
    trainer = build_trainer(cfg, extra_callbacks)
    if auto_batch == "search" and training:
        auto_batch_size.search(trainer, model, datamodule, cfg)
        datamodule.spec = datamodule.spec.with_datamodule(to_plain(cfg.data))  # data.json and checkpoints: the size
        model.hparams["data"] = datamodule.spec.to_dict()
    if trainer.is_global_zero:
        write_json(cfg.paths.output_dir, "data.json", datamodule.spec.to_dict())  # as checkpoints hold it
        datamodule.save_artifacts(Path(cfg.paths.output_dir))
    metrics: dict[str, Any] = {}
    if training:
        if cfg.get("lr_find") and ckpt_path:
            log.info("lr_find: skipped, the run resumes from %s with its optimizer's learning rate", ckpt_path)
        elif cfg.get("lr_find"):
            metrics.update(switches.find_learning_rate(trainer, model, datamodule, cfg.lr_finder, cfg.paths.output_dir))
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update(trainer.callback_metrics)
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if training and trainer.checkpoint_callback else ""
        if training and not best:
            log.warning("no best checkpoint was saved; testing the weights at the end of training")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(trainer.callback_metrics)
    result = scalar_metrics(metrics)
    if auto_batch is not None:
        result[auto_batch_size.METRIC] = float(cfg.data.batch_size)
    if trainer.is_global_zero:
        path = write_json(cfg.paths.output_dir, "metrics.json", result)
        write_run_page(cfg.paths.output_dir)  # report.html: cnn_zoo.reporting.run_page
        log.info("metrics: %s", {k: round(v, 4) for k, v in result.items() if k.startswith(("test/", "val/"))})
        log.info("run folder: %s", path.parent)
    log_run_hparams(trainer, cfg, result)  # TensorBoard's HParams tab: this config beside these metrics
    return result


def objective(cfg: DictConfig, metrics: dict[str, float], required: bool) -> float | None:
    """The value a sweeper optimises: `metrics[cfg.optimized_metric]` (a sweep job without it has failed)."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if required and name not in metrics:
        raise CnnZooError(f"optimized_metric={name!r} is not among the run's metrics {sorted(metrics)}")
    return metrics.get(name)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def run(cfg: DictConfig) -> float | None:
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        # A job of a sweep: an exception marks this job failed (Optuna records a failed trial) and
        # the sweep goes on; SystemExit would end the whole sweep.
        try:
            with run_faults(cfg):
                return objective(cfg, train(cfg), required=True)
        except CnnZooError as err:
            log.error("job failed: %s", err)
            raise
    with user_errors(), run_faults(cfg):  # a fault of a long run is one line too (cnn_zoo.runtime.faults)
        return objective(cfg, train(cfg), required=False)


def main() -> float | None:
    """The command line: `resume=<run folder>` first becomes that run's own overrides (`cnn_zoo.cli.run_folder`).

    OpenMP's waiting is chosen here, before anything loads torch (`performance.set_openmp_defaults`)."""
    performance.set_openmp_defaults()
    memory.keep_freed_memory()
    with user_errors():
        sys.argv[1:] = resume_arguments(sys.argv[1:])
    return hydra_command(run)


if __name__ == "__main__":
    main()
