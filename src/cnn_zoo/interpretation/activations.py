"""Feature maps: what every convolution responds to for one input (the notes' 26x26x32 maps of MNIST)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import LayerActivation
from torch import Tensor, nn

from cnn_zoo.interpretation.layers import conv_layers, gradients_through


@dataclass(frozen=True)
class FeatureMaps:
    """One layer's output for one input: (channels, H, W) for images, (channels, length) for sequences."""

    layer: str
    maps: Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.maps.shape)


def activations(model: nn.Module, x: Tensor, layers: list[str] | None = None) -> list[FeatureMaps]:
    """The output of each convolution in `layers` (default: all, in forward order) for the single input `x`.

    Read after the convolution itself, before its activation function, as Keras' layer outputs are when
    the activation is a separate layer; captum's LayerActivation records them with forward hooks.
    """
    convs = conv_layers(model)
    names = list(convs) if layers is None else list(layers)
    modules = [convs[name] for name in names]
    if not modules:
        return []
    with torch.no_grad(), gradients_through(getattr(model, "net", model)):
        outputs = LayerActivation(model, modules).attribute(x)  # a list of layers: one output each
    return [FeatureMaps(name, out[0].detach().float().cpu()) for name, out in zip(names, outputs, strict=True)]
