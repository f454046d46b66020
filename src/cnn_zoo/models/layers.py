"""Small helpers shared by the network families."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU}


def activation(name: str) -> nn.Module:
    from cnn_zoo.runtime.errors import CnnZooError

    if name not in ACTIVATIONS:
        raise CnnZooError(f"model.net.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


# non-decreasing activations: act(max(x)) == max(act(x)), values and gradients alike
MONOTONE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.Sigmoid)


def activation_and_pool(act: nn.Module, pool: nn.Module | None) -> list[nn.Module]:
    """`[act, pool]` as the notes write it, or `[pool, act]` when max pooling commutes with `act`: the same
    network (values, gradients, parameter names) with the activation computed on 1/k of the values."""
    if pool is None:
        return [act]
    if isinstance(pool, nn.MaxPool1d | nn.MaxPool2d) and isinstance(act, MONOTONE):
        return [pool, act]
    return [act, pool]


@torch.no_grad()
def flat_size(features: nn.Module, in_channels: int, input_size: list[int] | tuple[int, ...]) -> int:
    """Feature count after `features` for one input: the Flatten-Dense boundary, without LazyLinear."""
    from cnn_zoo.runtime.errors import CnnZooError

    was_training = features.training
    features.eval()
    try:
        out = features(torch.zeros(1, in_channels, *input_size))
    except RuntimeError as err:
        raise CnnZooError(
            f"images of {'x'.join(map(str, input_size))} pixels are too small for model.net's convolutions and "
            f"poolings; use a larger data.image_size ({str(err).splitlines()[0]})"
        ) from None
    features.train(was_training)
    return out.numel()


def _as_channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """nn.Flatten (same output, no parameters) that sends its gradient back in the input's channels-last layout.

    Flattening an NHWC tensor in NCHW order copies it, and the gradient comes back as an NCHW view. The pooling
    before it then takes ATen's mixed-layout path: LeNet's avg_pool2d_backward of [128, 50, 14, 14] took 3.9 ms
    against 0.48 ms in bf16 (0.21 ms in float32) with the gradient laid out as its input, a 0.08 ms copy.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nhwc = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        if x.requires_grad and nhwc:
            x.register_hook(_as_channels_last)
        return super().forward(x)


def dense_stack(in_features: int, hidden: list[int], num_outputs: int, act: str, dropout: float) -> nn.Sequential:
    """Flatten, hidden Dense layers, optional dropout, then the output layer."""
    layers: list[nn.Module] = [Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), activation(act)]
        in_features = width
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_features, num_outputs))
    return nn.Sequential(*layers)


class ConvClassifier(nn.Module):
    """A convolutional feature stack under a Flatten-Dense head sized by one dummy forward pass."""

    def __init__(
        self,
        features: nn.Sequential,
        in_channels: int,
        input_size: list[int] | tuple[int, ...],
        dense: list[int] | tuple[int, ...],
        num_outputs: int,
        activation_name: str,
        dropout: float,
    ) -> None:
        super().__init__()
        self.features = features
        self.head = dense_stack(
            flat_size(features, in_channels, input_size), list(dense), num_outputs, activation_name, dropout
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
