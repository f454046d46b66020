"""Grad-CAM: where in the input the evidence for a class lies, from the gradients at one convolution."""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from cnn_zoo.interpretation.layers import ClassScores, gradients_through
from cnn_zoo.runtime.errors import CnnZooError


def normalise(heatmap: Tensor) -> Tensor:
    """Each map scaled to [0, 1] by its own maximum (all zeros stay zeros: no positive evidence)."""
    flat = heatmap.flatten(1)
    peak = flat.amax(dim=1).clamp(min=1e-12).view(-1, *([1] * (heatmap.ndim - 1)))
    return (heatmap / peak).clamp(0.0, 1.0)


def gradcam(model: nn.Module, layer: nn.Module, x: Tensor, target: int, binary: bool) -> Tensor:
    """The class-activation map of class `target` at `layer`, upsampled to the input's spatial size, in [0, 1].

    Returns (N, H, W) for images (N, C, H, W) and (N, L) for sequences (N, C, L) or token ids (N, L).
    Computed by captum's LayerGradCam with ReLU (the original algorithm: only evidence for the class), then
    LayerAttribution.interpolate (bilinear for images, linear for sequences).
    """
    scores = ClassScores(model, binary)
    size = tuple(x.shape[2:]) if x.is_floating_point() else tuple(x.shape[1:])
    x = x.clone().requires_grad_(x.is_floating_point())
    with torch.enable_grad(), gradients_through(getattr(model, "net", model)):
        cam = LayerGradCam(scores, layer).attribute(x, target=int(target), relu_attributions=True)
    cam = cam.detach().float()
    if cam.ndim not in (3, 4):
        raise CnnZooError(
            f"the layer's output {tuple(cam.shape)} has no spatial axis for Grad-CAM; choose a convolution or a "
            "pooling/activation between them (layer=<name>; omit it for the last convolution)"
        )
    mode = "bilinear" if cam.ndim == 4 else "linear"
    upsampled = LayerAttribution.interpolate(cam, size, interpolate_mode=mode)
    return normalise(upsampled[:, 0]).cpu()
