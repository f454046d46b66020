"""The training switches of `conf/train.yaml` that act around `Trainer.fit`: compile, LR finder, test-only, config tree.

Each is a thin layer over the library that does the work (torch.compile, Lightning's `Tuner.lr_find`, rich), checked
first so that a switch that cannot apply is one line (`check_switches`), not a traceback inside the run.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf

from cnn_zoo.runtime import lightning_compat
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.progress import bars_enabled
from cnn_zoo.training import lr_range

if TYPE_CHECKING:
    import lightning as L

    from cnn_zoo.training.classifier import Classifier

log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
LR_FIND_PLOT = "lr_find.png"
LR_FIND_METRIC = "lr_find/lr"


def compile_mode(value: Any) -> str | None:
    """`compile=`: None (off), or the torch.compile mode (true: `default`)."""
    if value is None or value is False:
        return None
    if value is True:
        return "default"
    if isinstance(value, str) and value in COMPILE_MODES:
        return value
    modes = ", ".join(COMPILE_MODES)
    raise CnnZooError(f"compile must be true, false or a torch.compile mode ({modes}), got {value!r}")


def check_switches(cfg: DictConfig) -> None:
    """Combinations of switches that cannot work, each refused in one line before anything is built."""
    compile_mode(cfg.get("compile"))
    training = bool(cfg.get("train", True))
    if not training and not cfg.get("ckpt_path"):
        raise CnnZooError("train=false tests a checkpoint: pass ckpt_path=<run folder>/checkpoints/<name>.ckpt")
    if not training and not cfg.get("test", True):
        raise CnnZooError("train=false test=false does nothing: keep test=true to test the checkpoint")
    if cfg.get("lr_find") and not training:
        raise CnnZooError("lr_find=true runs before training: it needs train=true")
    method = (cfg.get("lr_finder") or {}).get("suggestion", "valley")
    if cfg.get("lr_find") and method not in lr_range.SUGGESTIONS:
        raise CnnZooError(f"lr_finder.suggestion must be one of {', '.join(lr_range.SUGGESTIONS)}, got {method!r}")
    schedule = ((cfg.get("callbacks") or {}).get("accumulate_schedule") or {}).get("scheduling")
    if schedule and int(cfg.trainer.get("accumulate_grad_batches") or 1) != 1:
        raise CnnZooError(
            "callbacks.accumulate_schedule.scheduling and trainer.accumulate_grad_batches="
            f"{cfg.trainer.accumulate_grad_batches} both set the accumulation: keep one"
        )


def compile_network(model: Classifier, value: Any) -> str | None:
    """`nn.Module.compile` of the network, in place: its parameters and state_dict keys stay those of the eager
    module (no `_orig_mod.` prefix), so checkpoints and exports are the same files as without it."""
    mode = compile_mode(value)
    if mode is None:
        return None
    model.net.compile(mode=mode)
    log.info("network compiled with torch.compile (mode %s): the first steps of each stage include compiling", mode)
    return mode


def find_learning_rate(
    trainer: L.Trainer, model: Classifier, datamodule: L.LightningDataModule, options: DictConfig, run_dir: str
) -> dict[str, float]:
    """Lightning's range test (`Tuner.lr_find`) on this model and data; its suggestion (`lr_finder.suggestion`:
    the middle of the longest descent of the raw-loss curve, or Lightning's steepest slope) becomes
    `optimizer.lr` (with `lr_finder.apply=true`) before the optimizer is built for the real fit."""
    from lightning.pytorch.tuner import Tuner

    if trainer.world_size > 1:
        raise CnnZooError(
            "lr_find=true runs in one process: find the rate without DDP (trainer=default), then pass optimizer.lr="
        )
    method = str(options.suggestion)
    quiet = contextlib.nullcontext() if bars_enabled() else lightning_compat.lr_finder_without_bar()
    with quiet, lr_range.recording_range_test(model) as curve:
        finder = Tuner(trainer).lr_find(
            model,
            datamodule=datamodule,
            min_lr=float(options.min_lr),
            max_lr=float(options.max_lr),
            num_training=int(options.num_training),
            mode=str(options.mode),
            early_stop_threshold=None if options.early_stop_threshold is None else float(options.early_stop_threshold),
            update_attr=False,  # the rate lives in hparams.optimizer, set below
        )
    beta = float(options.smoothing)
    if finder is None:
        suggestion = None
    elif method == "valley":
        suggestion = lr_range.valley_suggestion(curve, beta)
    else:
        suggestion = finder.suggestion()
    if suggestion is None:
        raise CnnZooError(
            "the learning-rate finder found no suggestion (too few batches or a diverging loss): "
            "raise lr_finder.num_training or lower lr_finder.max_lr"
        )
    plot = Path(run_dir) / LR_FIND_PLOT
    if trainer.is_global_zero:
        lr_range.plot_range_test(curve, beta, float(suggestion), str(options.mode) == "exponential", plot)
    before = model.hparams.optimizer.get("lr")
    if options.apply:
        model.hparams.optimizer["lr"] = float(suggestion)
        log.info("lr_find: learning rate %.3g (was %s, %s of %d steps); plot %s",
                 suggestion, before, method, len(curve.losses), plot)  # fmt: skip
    else:
        log.info("lr_find: suggested learning rate %.3g (%s of %d steps), not applied (lr_finder.apply=false): "
                 "training with %s; plot %s", suggestion, method, len(curve.losses), before, plot)  # fmt: skip
    return {LR_FIND_METRIC: float(suggestion)}


def tested_checkpoint_model(ckpt_path: str, cfg: DictConfig, class_names: list[str]) -> Classifier:
    """`train=false`: the checkpoint's own classifier (its network and data spec), with this run's TTA, checked to
    classify the classes of this run's data."""
    from cnn_zoo.runtime.config_values import to_plain
    from cnn_zoo.training.inference import load_classifier

    model = load_classifier(ckpt_path, tta=to_plain(cfg.get("tta")) or None)
    if list(model.spec.class_names) != list(class_names):
        raise CnnZooError(
            f"{ckpt_path} classifies {list(model.spec.class_names)}, this data has {list(class_names)}: "
            "pass the data config the checkpoint was trained on (e.g. experiment=<its experiment>)"
        )
    return model


@rank_zero_only
def print_config_tree(cfg: DictConfig) -> None:
    """The resolved config as a rich tree, one branch per top-level key (lightning-hydra-template's print_config)."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("config", style="bold", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(str(key), style="bold")
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else str(value)
        branch.add(rich.syntax.Syntax(text.rstrip("\n"), "yaml", theme="ansi_dark", background_color="default"))
    rich.print(tree)
