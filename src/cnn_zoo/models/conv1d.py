"""1-D convolutions over sequences: word embeddings (IMDB) or telemetry channels over time.

Text (the notes): Embedding(10000, 128) - Conv1D(32, 7) - MaxPool1D(5) - Conv1D(32, 7) - GlobalMaxPool - Dense(1)
= 1,315,937 parameters. Telemetry (the notes): Conv1D(256, 4, same) - MaxPool1D(2) - Conv1D(128, 2, same) -
GlobalMaxPool - Dense(k). Both are one stack: convolutions with max pooling between them, a global pooling,
then dense layers; an embedding in front when the input is token ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnn_zoo.models.layers import activation, activation_and_pool, dense_stack
from cnn_zoo.runtime.errors import CnnZooError


class LastStep(nn.Module):
    """The features of the sequence's last position, (N, C, L) -> (N, C, 1): what a window labelled by its last
    time step is about (a causal, TCN-style read-out), where max and average pooling forget positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., -1:]


class MaxAndLast(nn.Module):
    """Global max pooling (a pattern anywhere in the sequence) beside the last position's features: (N, 2C, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=-1, keepdim=True), x[..., -1:]], dim=1)


GLOBAL_POOLS: dict[str, type[nn.Module]] = {
    "max": nn.AdaptiveMaxPool1d,
    "avg": nn.AdaptiveAvgPool1d,
    "last": LastStep,
    "max_last": MaxAndLast,
}
POOLED_WIDTH = {"max_last": 2}  # channels out of the global pooling per channel in


def per_layer(name: str, value: int | Sequence[int], count: int) -> list[int]:
    """One value for every convolution, or a list of exactly `count`."""
    values = [int(value)] * count if isinstance(value, int) else [int(v) for v in value]
    if len(values) != count or min(values, default=1) <= 0:
        raise CnnZooError(f"model.net.{name} must be a positive integer or a list of {count}, got {value!r}")
    return values


class ChannelsLastConv1d(nn.Conv1d):
    """nn.Conv1d (the same parameters and checkpoints) that keeps an (N, C, L) input laid out as (N, L, C) in memory
    (an embedding's output, transposed) in that layout on the CPU: as a 1-row channels-last Conv2d, with no copy.

    oneDNN's channels-last kernels skip the copy to (N, C, L) and are faster: the notes' IMDB network's first
    convolution with its embedding, forward and backward, 152 ms against 86 ms a batch of 128 in float32 (64-83
    against 50 ms in bf16). The output comes out in the same layout, so the next convolution takes this path too.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.dim() == 3 and x.stride(1) == 1 and x.size(1) > 1
        if x.device.type != "cpu" or not channels_last or self.padding_mode != "zeros":
            return super().forward(x)
        out = F.conv2d(
            x.unsqueeze(2), self.weight.unsqueeze(2), self.bias, (1, *self.stride), (0, *self.padding),
            (1, *self.dilation), self.groups,
        )  # fmt: skip
        return out.squeeze(2)


def conv_layer(in_channels: int, out_channels: int, kernel_size: int, padding: str) -> list[nn.Module]:
    """Conv1d with Keras' padding: `valid`, or `same` padded (k-1)//2 on the left and the rest on the right."""
    if padding == "valid":
        return [ChannelsLastConv1d(in_channels, out_channels, kernel_size)]
    if padding != "same":
        raise CnnZooError(f"model.net.padding must be 'valid' or 'same', got {padding!r}")
    left = (kernel_size - 1) // 2
    conv = ChannelsLastConv1d(in_channels, out_channels, kernel_size)
    return [nn.ConstantPad1d((left, kernel_size - 1 - left), 0.0), conv]


EMBEDDING_DROPOUTS: dict[str, type[nn.Module]] = {"element": nn.Dropout, "channel": nn.Dropout1d}


def embedding_dropout_layer(rate: float, mode: str) -> nn.Module:
    """Dropout on the embedded words: `element` as Keras' Dropout after Embedding, `channel` as SpatialDropout1D
    (whole embedding dimensions dropped for the full review), the usual regulariser of small text CNNs."""
    if mode not in EMBEDDING_DROPOUTS:
        raise CnnZooError(f"model.net.embedding_dropout_mode must be one of {sorted(EMBEDDING_DROPOUTS)}, got {mode!r}")
    if not 0.0 <= rate < 1.0:
        raise CnnZooError(f"model.net.embedding_dropout must be in [0, 1), got {rate!r}")
    return EMBEDDING_DROPOUTS[mode](rate) if rate > 0 else nn.Identity()


class Conv1DNet(nn.Module):
    """Conv1D stack: [Embedding] - (Conv1D - act - MaxPool1D) x (n-1) - Conv1D - act - global pool - Dense.

    (A monotone activation runs after the max pooling: the same network, see `layers.activation_and_pool`.)

    Token ids of shape (N, L) when `embedding_dim` is set (`vocab_size` comes from the data), else float inputs
    of shape (N, in_channels, L) (`in_channels` comes from the data). `input_shape` (a data fact) is only used
    to check at build time that the sequence survives the convolutions and poolings.
    """

    data_inputs = ("num_outputs", "input_shape", "vocab_size", "in_channels")

    def __init__(
        self,
        num_outputs: int = 1,
        input_shape: Sequence[int] | None = None,
        vocab_size: int | None = None,
        embedding_dim: int | None = None,
        in_channels: int | None = None,
        filters: Sequence[int] = (32, 32),
        kernel_size: int | Sequence[int] = 7,
        padding: str = "valid",
        pool_size: int = 5,
        global_pool: str = "max",
        dense: Sequence[int] = (),
        activation_name: str = "relu",
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        embedding_dropout_mode: str = "element",
    ) -> None:
        super().__init__()
        filters = [int(f) for f in filters]
        if not filters or min(filters) <= 0:
            raise CnnZooError(f"model.net.filters must be a non-empty list of positive integers, got {filters!r}")
        kernels = per_layer("kernel_size", kernel_size, len(filters))
        if global_pool not in GLOBAL_POOLS:
            raise CnnZooError(f"model.net.global_pool must be one of {sorted(GLOBAL_POOLS)}, got {global_pool!r}")
        self.embedding: nn.Embedding | None = None
        if embedding_dim:
            if not vocab_size:
                raise CnnZooError("model.net.embedding_dim needs vocab_size (from text data such as data=imdb)")
            self.embedding = nn.Embedding(int(vocab_size), int(embedding_dim))
            self.embedding_dropout = embedding_dropout_layer(float(embedding_dropout), embedding_dropout_mode)
            channels = int(embedding_dim)
        elif in_channels:
            channels = int(in_channels)
        else:
            raise CnnZooError(
                "model.net needs in_channels (from sequence data such as data=telemetry) or embedding_dim (text)"
            )
        first_channels = channels
        layers: list[nn.Module] = []
        for index, (width, kernel) in enumerate(zip(filters, kernels, strict=True)):
            pool = nn.MaxPool1d(int(pool_size)) if index < len(filters) - 1 and int(pool_size) > 1 else None
            layers += [*conv_layer(channels, width, kernel, padding)]
            layers += activation_and_pool(activation(activation_name), pool)
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = GLOBAL_POOLS[global_pool](1) if global_pool in ("max", "avg") else GLOBAL_POOLS[global_pool]()
        pooled = channels * POOLED_WIDTH.get(global_pool, 1)
        self.head = dense_stack(pooled, list(dense), int(num_outputs), activation_name, float(dropout))
        if input_shape:
            self.check_length(first_channels, int(input_shape[-1]))

    @torch.no_grad()
    def check_length(self, channels: int, length: int) -> None:
        """A dummy pass: a sequence too short for the kernels and poolings is a config mistake, said at build time."""
        try:
            out = self.features(torch.zeros(1, channels, length))
        except RuntimeError as err:
            out, cause = None, err
        if out is None or out.shape[-1] < 1:
            raise CnnZooError(
                f"sequences of length {length} are too short for model.net (kernel sizes, pool_size, padding); "
                f"use longer sequences (data.max_len / data.window), smaller kernels or padding=same"
                + (f" ({str(cause).splitlines()[0]})" if out is None else "")
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x).transpose(1, 2)  # (N, L, E) -> (N, E, L): embedding dims are the channels
            x = self.embedding_dropout(x)
        return self.head(self.pool(self.features(x)))
