"""Input attributions: how much each token, time step and feature, or pixel moved a class's score.

- text: integrated gradients over the word embedding (captum's LayerIntegratedGradients), from an all-padding
  review to the review, summed over the embedding dimensions: one value per token position;
- sequences: integrated gradients (IntegratedGradients) from the all-zero window, which after standardisation
  is the training mean, to the window: one value per feature and time step;
- images: the gradient magnitude (Saliency), the largest over the colour channels: one value per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients, Saliency
from torch import Tensor, nn

from cnn_zoo.interpretation.layers import ClassScores, gradients_through


@dataclass(frozen=True)
class Attribution:
    """Attributions for one input and one class, with integrated gradients' completeness error."""

    values: Tensor  # (L,) tokens | (features, time) sequences | (H, W) pixels
    target: int
    delta: float | None = None  # |sum(attributions) - (score(x) - score(baseline))|; small = trustworthy


def embedding_of(model: nn.Module) -> nn.Embedding | None:
    return next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)


def token_attributions(
    model: nn.Module, ids: Tensor, target: int, binary: bool, pad_index: int = 0, steps: int = 50
) -> Attribution:
    """Integrated gradients of class `target` over the embedding of the token ids `ids` (1, L): values (L,)."""
    embedding = embedding_of(model)
    if embedding is None:
        raise ValueError("token attributions need a network with an embedding layer")
    baseline = torch.full_like(ids, int(pad_index))
    method = LayerIntegratedGradients(ClassScores(model, binary), embedding)
    with torch.enable_grad():
        values, delta = method.attribute(
            ids, baselines=baseline, target=int(target), n_steps=steps, return_convergence_delta=True
        )
    return Attribution(values[0].sum(dim=-1).detach().float().cpu(), int(target), float(delta.abs().max()))


def sequence_attributions(model: nn.Module, x: Tensor, target: int, binary: bool, steps: int = 50) -> Attribution:
    """Integrated gradients of class `target` for a float sequence `x` (1, features, time) from the zero window."""
    method = IntegratedGradients(ClassScores(model, binary))
    with torch.enable_grad():
        values, delta = method.attribute(
            x.float(), baselines=torch.zeros_like(x, dtype=torch.float32), target=int(target), n_steps=steps,
            return_convergence_delta=True,
        )  # fmt: skip
    return Attribution(values[0].detach().float().cpu(), int(target), float(delta.abs().max()))


def image_integrated_gradients(model: nn.Module, x: Tensor, target: int, binary: bool, steps: int = 50) -> Attribution:
    """Integrated gradients of class `target` for an image batch of one (1, C, H, W) from the all-zero (mean)
    image, summed over the channels: values (H, W). For networks without a spatial layer (Grad-CAM's fallback)."""
    method = IntegratedGradients(ClassScores(model, binary))
    with torch.enable_grad(), gradients_through(getattr(model, "net", model)):
        values, delta = method.attribute(
            x.float().clone(), baselines=torch.zeros_like(x, dtype=torch.float32), target=int(target), n_steps=steps,
            return_convergence_delta=True,
        )  # fmt: skip
    return Attribution(values[0].sum(dim=0).detach().float().cpu(), int(target), float(delta.abs().max()))


def saliency(model: nn.Module, x: Tensor, target: int, binary: bool) -> Attribution:
    """|d score / d pixel|, the largest over the channels, for an image batch of one (1, C, H, W): values (H, W)."""
    with torch.enable_grad(), gradients_through(getattr(model, "net", model)):
        values = Saliency(ClassScores(model, binary)).attribute(x.float().clone(), target=int(target), abs=True)
    return Attribution(values[0].amax(dim=0).detach().float().cpu(), int(target))
