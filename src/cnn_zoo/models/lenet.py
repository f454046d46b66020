"""LeNet: 5x5 convolutions alternating with 2x2 average pooling, filters growing, then dense layers."""

from __future__ import annotations

from torch import Tensor, nn

from cnn_zoo.models.layers import activation, dense_stack, flat_size


class LeNet(nn.Module):
    """LeNet-style network; `padding='same'` keeps 28x28 digits at 28 before the first pooling."""

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
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in filters:
            layers += [
                nn.Conv2d(channels, width, 5, padding=padding),
                activation(activation_name),
                nn.AvgPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = dense_stack(
            flat_size(self.features, in_channels, input_size),
            list(dense),
            num_outputs,
            activation_name,
            dropout,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
