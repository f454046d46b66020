"""The one LightningModule: binary or multi-class classification around any network.

Everything it needs is stored as plain hyperparameters (network config, the data spec as `DataSpec.to_dict()`,
optimizer and scheduler configs), so a checkpoint rebuilds the whole model and loads with `weights_only=True`;
checkpoints holding the older flat `facts` dict load too (`DataSpec.from_dict`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import hydra.utils
import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import AUROC, Accuracy, F1Score

from cnn_zoo.data.spec import DataSpec
from cnn_zoo.models import build_net
from cnn_zoo.models.interfaces import PretrainedNet, ScheduledNet
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.lightning_compat import HOOK_NAME_ATTRIBUTE, ddp_find_unused_parameters
from cnn_zoo.training.epoch_tally import EpochTally
from cnn_zoo.training.mixing import BatchMixing, check_label_smoothing, check_mixing, soft_target_loss
from cnn_zoo.training.options import check_model_options
from cnn_zoo.training.tta import TestTimeAugmentation
from cnn_zoo.training.warmup import split_warmup, warmup_scheduler

DTYPES = {"float32": torch.float32, "int64": torch.int64}


def make_metrics(num_classes: int, with_auroc: bool = True, validate_args: bool = True) -> MetricCollection:
    """Accuracy, macro F1 and AUROC for the task the number of classes implies.

    `validate_args=False` skips torchmetrics' checks of every batch's values (for the training step, whose
    probabilities are the classifier's own softmax and whose targets the loss has just used).
    """
    common: dict[str, Any] = {"validate_args": validate_args}
    if num_classes == 2:
        common["task"] = "binary"
        metrics: dict[str, Any] = {"acc": Accuracy(**common), "f1": F1Score(**common)}
    else:
        common.update(task="multiclass", num_classes=num_classes)
        metrics = {"acc": Accuracy(**common), "f1": F1Score(average="macro", **common)}
    if with_auroc:
        metrics["auroc"] = AUROC(**common)
    return MetricCollection(metrics)


def class_weight_tensor(spec: str | list[float] | None, data: DataSpec) -> Tensor | None:
    """`balanced` weights classes by n_samples / (n_classes * n_class), as scikit-learn does."""
    if spec is None:
        return None
    num_classes = data.num_classes
    if spec == "balanced":
        counts = data.stats.class_counts
        if not counts:
            raise CnnZooError("class_weights=balanced needs a datamodule that reports class_counts")
        counts_t = torch.tensor(counts, dtype=torch.float32).clamp(min=1)
        return counts_t.sum() / (num_classes * counts_t)
    if isinstance(spec, list | tuple) and len(spec) == num_classes:
        return torch.tensor([float(w) for w in spec])
    raise CnnZooError(f"model.class_weights must be null, 'balanced' or a list of {num_classes} numbers, got {spec!r}")



# torchmetrics' warnings when a class is absent from the targets: in Lightning's sanity check (two batches of a
# validation set read class by class) that is the rule, not news; in a real validation epoch they still show
MISSING_CLASS_WARNINGS = (r"No positive samples in targets", r"No negative samples in targets")


@contextlib.contextmanager
def without_missing_class_warnings(active: bool) -> Iterator[None]:
    if not active:
        yield
        return
    with warnings.catch_warnings():
        for message in MISSING_CLASS_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield

class Classifier(L.LightningModule):
    """Loss, metrics, optimizer/scheduler wiring and test-time augmentation for any `net`."""

    def __init__(
        self,
        net: dict[str, Any],
        data: dict[str, Any] | DataSpec,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        tta: dict[str, Any] | None = None,
        class_weights: str | list[float] | None = None,
        channels_last: bool = False,
        label_smoothing: float = 0.0,
        mixing: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.spec = data if isinstance(data, DataSpec) else DataSpec.from_dict(data)
        self.save_hyperparameters(ignore=["data"])
        self.hparams["data"] = self.spec.to_dict()  # old flat facts are stored in today's form from now on
        check_model_options(self.spec, tta=tta, channels_last=channels_last)
        self.num_classes = self.spec.num_classes
        self.binary = self.num_classes == 2
        self.net = build_net(net, self.spec)
        if channels_last:  # NHWC: with bf16 autocast on AMX/AVX512-BF16 CPUs (and on GPUs) convolutions run 2-4x faster
            self.net.to(memory_format=torch.channels_last)
        if isinstance(self.net, PretrainedNet):
            self.hparams["net"] = self.net.checkpoint_config(net)
        self.tta = TestTimeAugmentation(**(tta or {}))
        self.label_smoothing = check_label_smoothing(label_smoothing)  # training loss only: val/test losses stay plain
        check_mixing(mixing, self.spec.kind)
        self.mixing = BatchMixing(self.num_classes, **mixing) if mixing else None  # training batches only
        weights = class_weight_tensor(class_weights, self.spec)
        self.register_buffer("class_weights", weights, persistent=False)
        train_metrics = make_metrics(self.num_classes, with_auroc=False, validate_args=False)
        self.train_metrics = train_metrics.clone(prefix="train/")
        self.train_tally = EpochTally(self.train_metrics)
        self.val_metrics = make_metrics(self.num_classes).clone(prefix="val/")
        self.val_tally = EpochTally(self.val_metrics)
        self.test_metrics = make_metrics(self.num_classes).clone(prefix="test/")
        self.test_tally = EpochTally(self.test_metrics)
        self.test_tta_metrics = make_metrics(self.num_classes).clone(prefix="test/", postfix="_tta")
        self.val_acc_best = MaxMetric()
        self.resumed_acc_best: float | None = None
        self.example_input_array = torch.zeros(1, *self.spec.input_shape, dtype=DTYPES[self.spec.input_dtype])

    def __setattr__(self, name: str, value: Any) -> None:
        """Lightning's hook name (a string or None, never a Parameter, Module or buffer) set directly: Lightning sets
        it before and after every hook call, about 47 times a training step, and `nn.Module.__setattr__` first asks
        whether a value is a Parameter, Module or buffer (a Python-level check): 2.9 us a call, 0.14 ms a step."""
        if name == HOOK_NAME_ATTRIBUTE:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ----------------------------------------------------------------- forward and loss
    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.get("channels_last") and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.binary:
            pos_weight = None
            if self.class_weights is not None:
                pos_weight = (self.class_weights[1] / self.class_weights[0]).reshape(1)
            return F.binary_cross_entropy_with_logits(logits.squeeze(1), target.float(), pos_weight=pos_weight)
        return F.cross_entropy(logits, target, weight=self.class_weights)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Binary: P(class 1) of shape (N,); multi-class: softmax of shape (N, C)."""
        logits = logits.float()  # mixed precision: probabilities and metrics in float32
        return torch.sigmoid(logits.squeeze(1)) if self.binary else torch.softmax(logits, dim=1)

    def class_probabilities(self, probs: Tensor) -> Tensor:
        """Always (N, C), for prediction output."""
        return torch.stack([1 - probs, probs], dim=1) if self.binary else probs

    # ----------------------------------------------------------------- steps
    def shared_step(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        return self.loss(logits, y), self.probabilities(logits), y

    def predictions(self, logits: Tensor) -> Tensor:
        """What the training metrics take: P(class 1) for binary, the class index otherwise (as they would compute)."""
        return torch.sigmoid(logits.detach().float().squeeze(1)) if self.binary else logits.detach().argmax(dim=1)

    def training_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """A training batch's logits and loss: mixed (mixup/cutmix) and smoothed targets here, hard labels elsewhere."""
        if self.mixing is None and not self.label_smoothing:
            logits = self(x)
            return logits, self.loss(logits, y)
        if self.mixing is not None:
            x, target = self.mixing(x, y)
        else:
            target = F.one_hot(y, self.num_classes).float()
        logits = self(x)
        return logits, soft_target_loss(logits, target, self.binary, self.class_weights, self.label_smoothing)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        logits, loss = self.training_loss(x, y)
        self.train_tally.add(loss, self.predictions(logits), y)
        if self.is_logging_step():
            self.log("train/loss_step", loss, prog_bar=True, batch_size=y.shape[0])
        return loss

    def is_logging_step(self) -> bool:
        """Whether Lightning writes this step's values to the logger (every `log_every_n_steps`-th step): a value
        logged at another step would only be replaced before it is written, at 0.4 ms a call."""
        every = self.trainer.log_every_n_steps
        return bool(self.trainer.fast_dev_run) or (every > 0 and (self.global_step + 1) % every == 0)

    def on_train_epoch_end(self) -> None:
        """The epoch's mean loss and training metrics, logged once (`EpochTally`). TensorBoard gets
        `train/loss_epoch`, `train/acc_epoch`...; `callback_metrics` (the epoch line, metrics.json) `train/loss`..."""
        if self.train_tally.empty:
            return  # no training step this epoch (a run resumed at its epoch's end)
        loss, values = self.train_tally.compute_and_reset()
        values = {"train/loss": loss, **values}
        self.log_dict({f"{name}_epoch": value for name, value in values.items()}, prog_bar=False, sync_dist=True)
        self.log_dict(values, logger=False, prog_bar=True, sync_dist=True)

    def on_train_start(self) -> None:
        self.val_acc_best.reset()  # forget the sanity check's validation
        if self.resumed_acc_best is not None:  # a resumed run: the best of the epochs before the interruption
            self.val_acc_best.update(torch.tensor(self.resumed_acc_best))
        if isinstance(self.net, ScheduledNet):  # a mid-epoch resume gets no epoch-start hook from Lightning
            self.net.on_train_epoch_start(self.current_epoch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_acc_best"] = float(self.val_acc_best.max_value)
        if not self.train_tally.empty:  # saved mid-epoch (a stop signal, step-wise checkpoints)
            checkpoint["train_tally"] = self.train_tally.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A mid-epoch resume gets no epoch-start hook, so the epoch goes on with the batches tallied before the
        stop; a resume at an epoch's end starts the next epoch, whose hook empties the tally."""
        self.resumed_acc_best = checkpoint.get("val_acc_best")
        if "train_tally" in checkpoint:
            self.train_tally.load_state_dict(checkpoint["train_tally"], self.device)

    def setup(self, stage: str) -> None:
        """Before the strategy wraps the net: DDP keeps in sync only the parameters requiring grad at that time."""
        if stage == "fit" and self.trainer.world_size > 1 and isinstance(self.net, ScheduledNet):
            self.net.prepare_distributed(ddp_find_unused_parameters(self.trainer.strategy))

    def on_train_epoch_start(self) -> None:
        """Networks with a training schedule (transfer learning's frozen/fine-tuning phases) follow the epoch."""
        self.train_tally.reset()  # an epoch cut short (an exception caught by the caller) leaves nothing behind
        if isinstance(self.net, ScheduledNet):
            self.net.on_train_epoch_start(self.current_epoch)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, probs, y = self.shared_step(batch)
        self.val_tally.add(loss, probs, y)

    def on_validation_epoch_start(self) -> None:
        self.val_tally.reset()

    def on_validation_epoch_end(self) -> None:
        """`val/loss` (the mean over the epoch's samples), `val/acc`..., and the best `val/acc` so far, once."""
        if self.val_tally.empty:
            return
        with without_missing_class_warnings(self.trainer.sanity_checking):
            loss, values = self.val_tally.compute_and_reset()
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log_dict(values, prog_bar=True)  # torchmetrics' compute already gathered every rank's counts
        self.val_acc_best.update(values["val/acc"])
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Returns the batch's probabilities and targets for the inspection callbacks (confusion matrix, errors)."""
        loss, probs, y = self.shared_step(batch)
        self.test_tally.add(loss, probs, y)
        if not self.tta.active:
            return {"probs": probs.detach(), "target": y}
        probs_tta = self.tta(self.view_probabilities, batch[0])
        self.test_tta_metrics.update(probs_tta, y)
        return {"probs": probs.detach(), "probs_tta": probs_tta.detach(), "target": y}

    def on_test_epoch_start(self) -> None:
        self.test_tally.reset()
        self.test_tta_metrics.reset()

    def on_test_epoch_end(self) -> None:
        if self.test_tally.empty:
            return
        loss, values = self.test_tally.compute_and_reset()
        self.log("test/loss", loss, sync_dist=True)
        self.log_dict(values)
        if self.tta.active:
            self.log_dict(self.test_tta_metrics.compute())
            self.test_tta_metrics.reset()

    def view_probabilities(self, x: Tensor) -> Tensor:
        return self.probabilities(self(x))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        probs = self.tta(self.view_probabilities, x) if self.tta.active else self.view_probabilities(x)
        return self.class_probabilities(probs)

    # ----------------------------------------------------------------- optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """The network's own groups when it defines them (transfer learning), else its trainable parameters."""
        lr = float(self.hparams.optimizer.get("lr", 1e-3))
        if isinstance(self.net, ScheduledNet):
            return self.net.parameter_groups(lr)
        return [{"params": [p for p in self.net.parameters() if p.requires_grad]}]

    def configure_optimizers(self) -> Any:
        try:
            optimizer = hydra.utils.instantiate(self.hparams.optimizer)(self.parameter_groups())
        except Exception as err:
            raise CnnZooError(f"cannot build the optimizer from {self.hparams.optimizer}: {err}") from err
        if not self.hparams.scheduler:
            return optimizer
        config, warmup_epochs, start_factor = split_warmup(dict(self.hparams.scheduler))
        try:
            scheduler = hydra.utils.instantiate(config.pop("scheduler"))(optimizer)
        except Exception as err:
            raise CnnZooError(f"cannot build the scheduler from {self.hparams.scheduler}: {err}") from err
        main = {"scheduler": scheduler, **config}
        if not warmup_epochs:
            return {"optimizer": optimizer, "lr_scheduler": main}
        return [optimizer], [warmup_scheduler(optimizer, warmup_epochs, start_factor), main]
