"""What TensorBoard shows beyond the curves: hyperparameters with final metrics, a confusion matrix,
the top losses with the most confused classes, and a preview of the augmented training batch.

Figures are plain matplotlib `Figure`s rendered by TensorBoard's Agg canvas: no pyplot, no display needed.

Each callback writes through the run's `TensorBoardLogger` and does nothing without one (e.g. `logger=csv`),
on ranks other than zero, or for data it cannot draw (a text grid without a vocabulary).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import Tensor
from torch.utils.tensorboard.summary import hparams
from torchmetrics import ConfusionMatrix
from torchvision.utils import make_grid

from cnn_zoo.data.kinds import MistakeDrawing
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.interpretation.toplosses import (
    Mistake,
    class_probabilities,
    confused_markdown,
    mistakes_markdown,
    most_confused,
    top_losses,
)
from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)


def tensorboard_logger(trainer: L.Trainer) -> TensorBoardLogger | None:
    """The run's TensorBoard logger on rank zero, else None."""
    if not trainer.is_global_zero:
        return None
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"optimizer": {"lr": 1e-3}}` -> `{"optimizer.lr": 1e-3}`: the keys read like Hydra overrides."""
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree if isinstance(tree, int | float | str | bool) else str(tree)}


def log_run_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """The resolved config beside the final metrics, for TensorBoard's HParams tab (runs compared side by side)."""
    logger = tensorboard_logger(trainer)
    if logger is None or not metrics:
        return
    try:
        params = flatten(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as err:  # an unused, unresolvable value must not fail a finished run
        log.warning("hyperparameters not logged to TensorBoard: %s", err)
        return
    # The HParams tab reads each metric's value from the scalars of the same name, which the run already logged
    # (Lightning's `log_hyperparams(metrics=...)` would write every one again): name the logged tags only.
    tags = {scalar_tag(k): v for k, v in metrics.items()}
    exp, ssi, sei = hparams(params, tags)
    writer = logger.experiment._get_file_writer()  # as Lightning's TensorBoardLogger.log_hyperparams does
    for summary in (exp, ssi, sei):
        writer.add_summary(summary, trainer.global_step)
    logger.experiment.flush()


def scalar_tag(metric: str) -> str:
    """The TensorBoard tag of a metrics.json key: training values are logged as `train/<name>_epoch`."""
    return f"{metric}_epoch" if metric.startswith("train/") and not metric.endswith("_epoch") else metric


# training and validation on one chart each (TensorBoard's Custom Scalars tab); tags are regular expressions
CURVE_LAYOUT = {
    "training vs validation": {
        "loss": ["Multiline", ["^train/loss_epoch$", "^val/loss$"]],
        "accuracy": ["Multiline", ["^train/acc_epoch$", "^val/acc$"]],
        "f1": ["Multiline", ["^train/f1_epoch$", "^val/f1$"]],
        "learning rate": ["Multiline", ["^lr-"]],
    }
}


class CurveLayout(L.Callback):
    """TensorBoard's Custom Scalars layout: training and validation loss (and accuracy, F1) on shared charts.

    The Scalars tab keeps one chart per tag; this layout draws `train/loss_epoch` and `val/loss` together."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = tensorboard_logger(trainer)
        if logger is not None:
            logger.experiment.add_custom_scalars(CURVE_LAYOUT)


def data_spec(pl_module: L.LightningModule) -> DataSpec:
    """The module's data spec (its kind draws the inputs)."""
    return DataSpec.from_dict(pl_module.hparams.get("data") or {})


def class_names(pl_module: L.LightningModule) -> list[str]:
    return list(data_spec(pl_module).class_names)


def predictions(probs: Tensor) -> Tensor:
    """Class indices from the Classifier's probabilities: (N,) P(class 1) when binary, (N, C) otherwise."""
    return (probs >= 0.5).long() if probs.ndim == 1 else probs.argmax(dim=1)


def displayable(images: Tensor, data: dict[str, Any] | DataSpec) -> Tensor:
    """Inputs as pictures in [0, 1], as the data kind shows them (images: the mean/std normalisation undone)."""
    spec = data if isinstance(data, DataSpec) else DataSpec.from_dict(data)
    return spec.data_kind.displayable(spec, images)


class ConfusionMatrixImage(L.Callback):
    """The test set's confusion matrix, drawn by torchmetrics, as image `test/confusion_matrix`."""

    def __init__(self, normalize: str | None = None, write_files: bool = True, tta: bool = False) -> None:
        self.normalize = normalize  # None (counts) | "true" | "pred" | "all", as torchmetrics
        self.write_files = bool(write_files)  # confusion_matrix.json (counts) in the run folder, for the run page
        self.tta = bool(tta)  # the test-time-augmented predictions when the model has TTA (evaluate's choice)
        self.matrix: ConfusionMatrix | None = None
        self.counts: ConfusionMatrix | None = None  # the counts beside a normalised matrix, for the JSON
        self.last: Tensor | None = None  # the last matrix computed, rows = true class

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_classes = len(class_names(pl_module))
        task = {"task": "binary"} if num_classes == 2 else {"task": "multiclass", "num_classes": num_classes}
        self.matrix = ConfusionMatrix(normalize=self.normalize, **task).to(pl_module.device)
        self.counts = ConfusionMatrix(**task).to(pl_module.device) if self.normalize else self.matrix

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if self.matrix is not None and isinstance(outputs, dict) and "probs" in outputs:
            probs = outputs.get("probs_tta", outputs["probs"]) if self.tta else outputs["probs"]
            self.matrix.update(probs, outputs["target"])
            if self.counts is not self.matrix and self.counts is not None:
                self.counts.update(probs, outputs["target"])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.matrix is None or not self.matrix.update_called:
            return
        value = self.matrix.compute()  # every rank: the states are gathered across processes
        self.last = value.cpu()
        counts = self.counts.compute().cpu() if self.counts is not None else self.last
        if self.write_files and trainer.is_global_zero and getattr(trainer, "default_root_dir", None):
            tested = Path(trainer.ckpt_path).name if trainer.ckpt_path else "final weights"
            content = {"class_names": class_names(pl_module), "matrix": counts.long().tolist(), "tested": tested}
            path = Path(trainer.default_root_dir) / "confusion_matrix.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content, indent=2) + "\n")
        logger = tensorboard_logger(trainer)
        if logger is not None:
            names = class_names(pl_module)
            side = max(4.0, 0.6 * len(names) + 2)
            fig = Figure(figsize=(side, side), layout="constrained")
            _, ax = self.matrix.plot(val=self.last, ax=fig.add_subplot(), labels=names)
            tested = Path(trainer.ckpt_path).name if trainer.ckpt_path else "final weights"
            ax.set_title(f"test set confusion matrix ({tested})")
            logger.experiment.add_figure("test/confusion_matrix", fig, global_step=trainer.global_step, close=True)
        self.matrix = self.counts = None


class TopLosses(L.Callback):
    """fastai's `plot_top_losses` and `most_confused` for the test set (`cnn_zoo.interpretation.toplosses`).

    The `max_samples` test samples the model was most confidently wrong about, ordered by loss (an image grid
    with each sample's Grad-CAM for the predicted class over it, or for text the reviews' opening words), and
    the most confused class pairs by count: `test/top_losses` and `test/most_confused` in TensorBoard, and
    `top_losses.png` / `top_losses.md` / `most_confused.md` in the run folder (`trainer.default_root_dir`).
    Every test sample is scored; only the current top `max_samples` inputs are kept in memory.
    """

    def __init__(
        self, max_samples: int = 32, nrow: int = 8, words: int = 40, heatmaps: bool = True, write_files: bool = True
    ) -> None:
        self.max_samples = int(max_samples)
        self.nrow = int(nrow)
        self.words = int(words)
        self.heatmaps = bool(heatmaps)
        self.write_files = bool(write_files)
        self.reset()

    def reset(self) -> None:
        self.mistakes: list[Mistake] = []  # the top ones so far, highest loss first
        self.inputs: dict[int, Tensor] = {}  # their inputs, by sample index
        self.predicted: list[Tensor] = []
        self.targets: list[Tensor] = []
        self.seen = 0

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset()

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if not isinstance(outputs, dict) or "probs" not in outputs:
            return
        probs, target = outputs["probs"].detach().float().cpu(), outputs["target"].detach().cpu()
        x = batch[0] if isinstance(batch, list | tuple) else batch
        self.predicted.append(class_probabilities(probs).argmax(dim=1))
        self.targets.append(target)
        batch_top = top_losses(probs, target, self.max_samples, offset=self.seen)
        merged = sorted([*self.mistakes, *batch_top], key=lambda m: -m.loss)[: self.max_samples]
        for m in batch_top:
            if m in merged:
                self.inputs[m.index] = x[m.index - self.seen].detach().cpu().clone()
        self.mistakes = merged
        self.inputs = {m.index: self.inputs[m.index] for m in merged}
        self.seen += len(target)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.targets:
            return
        spec = data_spec(pl_module)
        kind, names = spec.data_kind, list(spec.class_names)
        predicted, targets = torch.cat(self.predicted), torch.cat(self.targets)
        confused = confused_markdown(most_confused(predicted, targets), names, len(targets))
        logger = tensorboard_logger(trainer)
        folder = Path(trainer.default_root_dir) if self.write_files else None
        inputs = [self.inputs[m.index] for m in self.mistakes]
        openings = kind.openings(spec, inputs, self.words) if inputs else None
        table = mistakes_markdown(self.mistakes, names, openings)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "most_confused.md").write_text("# Most confused (true -> predicted)\n\n" + confused + "\n")
            (folder / "top_losses.md").write_text("# Top losses (most confident mistakes)\n\n" + table + "\n")
        if logger is not None:
            logger.experiment.add_text("test/most_confused", confused, global_step=trainer.global_step)
        fig = None
        if self.mistakes:
            stacked = torch.stack(inputs)
            labels = [
                f"{names[m.target]}→{names[m.predicted]} p={m.probability:.2f} loss={m.loss:.2f}" for m in self.mistakes
            ]
            heatmaps = (lambda: self.gradcams(pl_module, stacked)) if self.heatmaps else (lambda: None)
            fig = kind.draw_mistakes(spec, MistakeDrawing(self.mistakes, stacked, labels, names, folder, self.nrow,
                                                          heatmaps))  # fmt: skip
        if logger is not None and fig is not None:
            logger.experiment.add_figure("test/top_losses", fig, global_step=trainer.global_step, close=True)
        elif logger is not None and self.mistakes:
            logger.experiment.add_text("test/top_losses", table, global_step=trainer.global_step)
        self.reset()

    def gradcams(self, pl_module: L.LightningModule, inputs: Tensor) -> Any:
        """Each top-loss image's Grad-CAM for its (wrong) prediction at the last convolution, or None without one."""
        try:
            from cnn_zoo.interpretation.gradcam import gradcam
            from cnn_zoo.interpretation.layers import find_layer

            _, layer = find_layer(pl_module, None)
        except (ImportError, CnnZooError) as err:  # no captum, or no convolution: the grid without heatmaps
            log.info("top losses without Grad-CAM: %s", err)
            return None
        maps = []
        was_training = pl_module.training
        pl_module.eval()
        with torch.inference_mode(False), torch.autocast(pl_module.device.type, enabled=False):
            for m, x in zip(self.mistakes, inputs, strict=True):
                x = x.clone().unsqueeze(0).to(pl_module.device)
                maps.append(gradcam(pl_module, layer, x, m.predicted, pl_module.num_classes == 2)[0].numpy())
        pl_module.train(was_training)
        return np.stack(maps)


class AugmentationPreview(L.Callback):
    """The first training batch as the network sees it (after augmentation), as image `train/augmentation_preview`."""

    def __init__(self, max_images: int = 32, nrow: int = 8) -> None:
        self.max_images = int(max_images)
        self.nrow = int(nrow)
        self.done = False

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.done:
            return
        self.done = True
        logger = tensorboard_logger(trainer)
        x = batch[0] if isinstance(batch, list | tuple) else batch
        spec = data_spec(pl_module)
        shown = spec.data_kind.preview(spec, x[: self.max_images]) if logger is not None else None
        if shown is None:
            return
        grid = make_grid(shown, nrow=self.nrow, padding=2, pad_value=1.0)
        logger.experiment.add_image("train/augmentation_preview", grid, global_step=trainer.global_step)
