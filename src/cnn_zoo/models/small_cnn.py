"""The course's small CNNs: 3x3 convolutions with max pooling between them, then dense layers.

MNIST: Conv(32)-Pool-Conv(64)-Pool-Conv(64)-Flatten-Dense(64)-Dense(10) = 93,322 parameters.
Cats/dogs at 180x180: Conv(32)-Pool-Conv(64)-Pool-Conv(128)-Pool-Conv(256)-Pool-Conv(256)-Flatten-Dense(1)
= 991,041 parameters.
"""

from __future__ import annotations

from torch import nn

from cnn_zoo.models.layers import ConvClassifier, activation, activation_and_pool


class SmallCNN(ConvClassifier):
    """Valid 3x3 convolutions, a 2x2 max pooling after each but the last (as in the notes); optionally batch norm.

    A monotone activation runs after the pooling rather than before (`layers.activation_and_pool`): the same
    network, with a quarter of the activation work.
    """

    data_inputs = ("num_outputs", "in_channels", "input_size")

    def __init__(
        self,
        in_channels: int = 1,
        num_outputs: int = 10,
        input_size: tuple[int, int] = (28, 28),
        filters: tuple[int, ...] = (32, 64, 64),
        dense: tuple[int, ...] = (64,),
        kernel_size: int = 3,
        activation_name: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(filters):
            if batch_norm:  # Conv(no bias)-BatchNorm-act: trains faster and at higher learning rates
                layers += [nn.Conv2d(channels, width, kernel_size, bias=False), nn.BatchNorm2d(width)]
            else:
                layers.append(nn.Conv2d(channels, width, kernel_size))
            pool = nn.MaxPool2d(2) if index < len(filters) - 1 else None
            layers += activation_and_pool(activation(activation_name), pool)
            channels = width
        super().__init__(nn.Sequential(*layers), in_channels, input_size, dense, num_outputs, activation_name, dropout)
