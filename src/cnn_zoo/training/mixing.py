"""Mixup / CutMix on training batches and the soft-target loss they need, with label smoothing beside them.

torchvision's `transforms.v2.MixUp` and `CutMix` mix each image with its neighbour in the (shuffled) batch and turn
the labels into (N, C) class probabilities; the loss then compares logits with those probabilities. They run in
the classifier's training step on whole batches (never on validation, test or prediction), and draw their random
numbers from torch's global generator, which `cnn_zoo.callbacks.resume.ExactResume` stores in every checkpoint: a
resumed run mixes exactly as the interrupted one would have.

The keys live in the `augmentation` config group beside the per-sample albumentations `transforms`
(`augmentation.mixup_alpha=0.2`, `cutmix_alpha=1.0`, `mixup_prob`, `mixup_switch_prob`); an alpha of 0 is off.
Both are image operations: with text or sequences they are refused in one line (`check_mixing`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cnn_zoo.data.kinds import KindOption, kind_named
from cnn_zoo.runtime.errors import CnnZooError

MIXING_KEYS = ("mixup_alpha", "cutmix_alpha", "mixup_prob", "mixup_switch_prob")


def default(value: Any, fallback: float) -> Any:
    return fallback if value is None else value


def mixing_config(augmentation: dict[str, Any] | None) -> dict[str, float] | None:
    """The batch-mixing part of an `augmentation` config as plain numbers, or None when both alphas are 0."""
    augmentation = augmentation or {}
    config = {
        "mixup_alpha": float(augmentation.get("mixup_alpha") or 0.0),
        "cutmix_alpha": float(augmentation.get("cutmix_alpha") or 0.0),
        "mixup_prob": float(default(augmentation.get("mixup_prob"), 1.0)),
        "mixup_switch_prob": float(default(augmentation.get("mixup_switch_prob"), 0.5)),
    }
    for key in ("mixup_alpha", "cutmix_alpha"):
        if config[key] < 0:
            raise CnnZooError(f"augmentation.{key} must be >= 0 (0: off), got {config[key]}")
    for key in ("mixup_prob", "mixup_switch_prob"):
        if not 0.0 <= config[key] <= 1.0:
            raise CnnZooError(f"augmentation.{key} must be a probability in [0, 1], got {config[key]}")
    if config["mixup_alpha"] == 0 and config["cutmix_alpha"] == 0:
        return None
    return config


def check_mixing(config: dict[str, float] | None, kind: str) -> None:
    """Mixup and CutMix blend pixels and cut boxes: one line for a data kind that does not take them."""
    if config:
        on = [f"augmentation.{k}={config[k]}" for k in ("mixup_alpha", "cutmix_alpha") if config[k]]
        fix = "set augmentation.mixup_alpha=0 augmentation.cutmix_alpha=0"
        kind_named(kind).check_options([KindOption("mixing", " ".join(on), fix)])


def check_label_smoothing(value: float) -> float:
    value = float(value or 0.0)
    if not 0.0 <= value < 1.0:
        raise CnnZooError(f"model.loss.label_smoothing must be in [0, 1), got {value}")
    return value


class BatchMixing:
    """Mixup or CutMix (or a random choice between them) applied to a batch with probability `mixup_prob`."""

    def __init__(self, num_classes: int, mixup_alpha: float, cutmix_alpha: float, mixup_prob: float = 1.0,
                 mixup_switch_prob: float = 0.5) -> None:  # fmt: skip
        from torchvision.transforms import v2

        self.num_classes = num_classes
        self.prob = mixup_prob
        mixers, weights = [], []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
            weights.append(1.0 - mixup_switch_prob if cutmix_alpha > 0 else 1.0)
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
            weights.append(mixup_switch_prob if mixup_alpha > 0 else 1.0)
        self.mix = mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers, p=weights)

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Images and (N, C) target probabilities (one-hot where this batch is left unmixed)."""
        if self.prob < 1.0 and float(torch.rand(())) >= self.prob:
            return x, F.one_hot(y, self.num_classes).float()
        return self.mix(x, y)


def smooth(target: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """(N, C) probabilities with `smoothing` spread evenly over the classes, as `cross_entropy(label_smoothing=)`."""
    return target * (1.0 - smoothing) + smoothing / num_classes if smoothing else target


def soft_target_loss(logits: Tensor, target: Tensor, binary: bool, class_weights: Tensor | None,
                     smoothing: float) -> Tensor:  # fmt: skip
    """Cross-entropy against (N, C) class probabilities (mixed or smoothed labels).

    Binary classifiers have one logit: their target is P(class 1), the second column, for BCE with logits.
    """
    num_classes = target.shape[1]
    if binary:
        soft = smooth(target, num_classes, smoothing)[:, 1]
        pos_weight = None if class_weights is None else (class_weights[1] / class_weights[0]).reshape(1)
        return F.binary_cross_entropy_with_logits(logits.squeeze(1), soft, pos_weight=pos_weight)
    return F.cross_entropy(logits, target, weight=class_weights, label_smoothing=smoothing)
