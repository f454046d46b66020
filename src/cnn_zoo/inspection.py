"""What TensorBoard shows beyond the curves: hyperparameters with final metrics, a confusion matrix,
misclassified samples and a preview of the augmented training batch.

Figures are plain matplotlib `Figure`s rendered by TensorBoard's Agg canvas: no pyplot, no display needed.

Each callback writes through the run's `TensorBoardLogger` and does nothing without one (e.g. `logger=csv`),
on ranks other than zero, or for data it cannot draw (a text grid without a vocabulary).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import Tensor
from torchmetrics import ConfusionMatrix
from torchvision.utils import make_grid

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
    # Lightning also writes these as scalars: under `final/` they are single points that leave the
    # per-epoch curves (and the report read from them) untouched.
    final = {f"final/{k}": v for k, v in metrics.items() if not k.endswith("_step")}
    logger.log_hyperparams(params, metrics=final, step=trainer.global_step)
    logger.experiment.flush()


def class_names(pl_module: L.LightningModule) -> list[str]:
    facts = pl_module.hparams.get("data") or {}
    return [str(n) for n in facts.get("class_names", range(int(facts.get("num_classes", 2))))]


def facts_of(pl_module: L.LightningModule) -> dict[str, Any]:
    """The flat facts view of the module's data spec (mean/std, vocabulary...), whichever form it was saved in."""
    from cnn_zoo.data.spec import DataSpec

    data = pl_module.hparams.get("data") or {}
    return DataSpec.from_dict(data).facts() if "contract" in data else dict(data)


def predictions(probs: Tensor) -> Tensor:
    """Class indices from the Classifier's probabilities: (N,) P(class 1) when binary, (N, C) otherwise."""
    return (probs >= 0.5).long() if probs.ndim == 1 else probs.argmax(dim=1)


def displayable(images: Tensor, facts: dict[str, Any]) -> Tensor:
    """Undo the datamodule's mean/std normalisation so the images look as they were read, clipped to [0, 1]."""
    images = images.detach().float().cpu()
    mean, std = facts.get("mean"), facts.get("std")
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        images = images * torch.tensor(std, dtype=images.dtype).view(shape) + torch.tensor(mean).view(shape)
        return images.clamp(0.0, 1.0)
    low, high = images.amin(), images.amax()
    return (images - low) / (high - low).clamp(min=1e-8)


def is_image_batch(x: Any, facts: dict[str, Any]) -> bool:
    return facts.get("kind", "image") == "image" and isinstance(x, Tensor) and x.ndim == 4 and x.is_floating_point()


class ConfusionMatrixImage(L.Callback):
    """The test set's confusion matrix, drawn by torchmetrics, as image `test/confusion_matrix`."""

    def __init__(self, normalize: str | None = None) -> None:
        self.normalize = normalize  # None (counts) | "true" | "pred" | "all", as torchmetrics
        self.matrix: ConfusionMatrix | None = None
        self.last: Tensor | None = None  # the last matrix computed, rows = true class

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_classes = len(class_names(pl_module))
        task = {"task": "binary"} if num_classes == 2 else {"task": "multiclass", "num_classes": num_classes}
        self.matrix = ConfusionMatrix(normalize=self.normalize, **task).to(pl_module.device)

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if self.matrix is not None and isinstance(outputs, dict) and "probs" in outputs:
            self.matrix.update(outputs["probs"], outputs["target"])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.matrix is None or not self.matrix.update_called:
            return
        value = self.matrix.compute()  # every rank: the states are gathered across processes
        self.last = value.cpu()
        logger = tensorboard_logger(trainer)
        if logger is not None:
            names = class_names(pl_module)
            side = max(4.0, 0.6 * len(names) + 2)
            fig = Figure(figsize=(side, side), layout="constrained")
            _, ax = self.matrix.plot(val=self.last, ax=fig.add_subplot(), labels=names)
            tested = Path(trainer.ckpt_path).name if trainer.ckpt_path else "final weights"
            ax.set_title(f"test set confusion matrix ({tested})")
            logger.experiment.add_figure("test/confusion_matrix", fig, global_step=trainer.global_step, close=True)
        self.matrix = None


class MisclassifiedSamples(L.Callback):
    """The first `max_samples` wrong test predictions: an image grid labelled true/pred, or, for text,
    the reviews' opening words (decoded with the datamodule's vocabulary `facts["vocab"]`)."""

    def __init__(self, max_samples: int = 32, nrow: int = 8, words: int = 40) -> None:
        self.max_samples = int(max_samples)
        self.nrow = int(nrow)
        self.words = int(words)
        self.samples: list[tuple[Tensor, int, int, float]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.samples = []

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if len(self.samples) >= self.max_samples or not isinstance(outputs, dict) or "probs" not in outputs:
            return
        probs, target = outputs["probs"].detach().cpu(), outputs["target"].detach().cpu()
        pred = predictions(probs)
        confidence = torch.where(pred == 1, probs, 1 - probs) if probs.ndim == 1 else probs.amax(dim=1)
        x = batch[0] if isinstance(batch, list | tuple) else batch
        for i in torch.nonzero(pred != target).flatten().tolist()[: self.max_samples - len(self.samples)]:
            self.samples.append((x[i].detach().cpu(), int(target[i]), int(pred[i]), float(confidence[i])))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = tensorboard_logger(trainer)
        if logger is None or not self.samples:
            return
        facts, names = facts_of(pl_module), class_names(pl_module)
        inputs = torch.stack([s[0] for s in self.samples])
        if is_image_batch(inputs, facts):
            fig = self.image_figure(displayable(inputs, facts), names)
            logger.experiment.add_figure("test/misclassified", fig, global_step=trainer.global_step, close=True)
        elif facts.get("kind") == "text" and facts.get("vocab"):
            table = self.text_table(facts, names)
            logger.experiment.add_text("test/misclassified", table, global_step=trainer.global_step)
        else:
            log.info("misclassified samples: nothing to draw for %s data", facts.get("kind", "this"))
        self.samples = []

    def image_figure(self, images: Tensor, names: list[str]) -> Figure:
        padding = 2
        grid = make_grid(images, nrow=self.nrow, padding=padding, pad_value=1.0)
        height, width = images.shape[-2:]
        columns = min(self.nrow, len(images))
        rows = (len(images) + self.nrow - 1) // self.nrow
        fig = Figure(figsize=(1.4 * columns + 0.5, 1.5 * rows + 0.5), layout="constrained")
        ax = fig.add_subplot()
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        for index, (_, true, pred, confidence) in enumerate(self.samples):
            row, col = divmod(index, self.nrow)
            ax.text(
                padding + col * (width + padding) + 1,
                padding + row * (height + padding) + 1,
                f"{names[true]}→{names[pred]} {confidence:.2f}",
                fontsize=6,
                va="top",
                color="white",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0},
            )
        ax.set_axis_off()
        ax.set_title("misclassified test samples: true→predicted (confidence)", fontsize=8)
        return fig

    def text_table(self, facts: dict[str, Any], names: list[str]) -> str:
        vocab = facts["vocab"]
        pad = int(facts.get("pad_index", 0))
        lines = ["| true | predicted | confidence | opening |", "|---|---|---|---|"]
        for tokens, true, pred, confidence in self.samples:
            ids = [int(t) for t in tokens.flatten().tolist() if int(t) != pad][: self.words]
            opening = " ".join(vocab[i] if 0 <= i < len(vocab) else "?" for i in ids).replace("|", "/")
            lines.append(f"| {names[true]} | {names[pred]} | {confidence:.2f} | {opening} |")
        return "\n".join(lines)


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
        facts = facts_of(pl_module)
        if logger is None or not is_image_batch(x, facts):
            return
        grid = make_grid(displayable(x[: self.max_images], facts), nrow=self.nrow, padding=2, pad_value=1.0)
        logger.experiment.add_image("train/augmentation_preview", grid, global_step=trainer.global_step)
