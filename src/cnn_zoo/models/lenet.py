"""LeNet: 5x5 convolutions alternating with 2x2 average pooling, filters growing, then dense layers."""

from __future__ import annotations

from torch import nn

from cnn_zoo.models.layers import ConvClassifier, activation


class LeNet(ConvClassifier):
    """LeNet-style network; `padding='same'` keeps 28x28 digits at 28 before the first pooling."""

    data_inputs = ("num_outputs", "in_channels", "input_size")

    def __init__(
        self,
        in_channels: int = 1,
        num_outputs: int = 10,
        input_size: tuple[int, int] = (28, 28),
        filters: tuple[int, ...] = (20, 50),
        dense: tuple[int, ...] = (500,),
        activation_name: str = "relu",
        padding: str = "same",
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for width in filters:
            layers += [
                nn.Conv2d(channels, width, 5, padding=padding),
                activation(activation_name),
                nn.AvgPool2d(2),
            ]
            channels = width
        super().__init__(nn.Sequential(*layers), in_channels, input_size, dense, num_outputs, activation_name, dropout)
