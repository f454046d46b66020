"""The declared interfaces between the Classifier and networks that do more than `forward`.

A network with a training schedule (transfer learning's frozen then fine-tuned phases) implements
`ScheduledNet`; one whose weights come from outside the checkpoint (ImageNet files) implements `PretrainedNet`.
The Classifier checks `isinstance(net, ScheduledNet)` (runtime-checkable Protocols) instead of probing names;
attribution (`cnn_zoo.interpretation`) asks a `BackboneWithoutGradients` net for gradients through all its layers.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ScheduledNet(Protocol):
    """A network whose trainable parameters follow the epoch, with its own optimizer groups."""

    def on_train_epoch_start(self, epoch: int) -> None:
        """Set `requires_grad` and train/eval modes for `epoch` (idempotent: resumes land in the right phase)."""

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """Every optimizer group the schedule will ever train, from the start."""

    def prepare_distributed(self, find_unused_parameters: bool) -> None:
        """Before DDP wraps the net: make every parameter the schedule will train require grad."""


@runtime_checkable
class PretrainedNet(Protocol):
    """A network that loads weights at construction; a checkpoint must rebuild it without fetching them again."""

    def checkpoint_config(self, net_config: dict[str, Any]) -> dict[str, Any]:
        """The config stored in checkpoints (weights come from the state dict there)."""


@runtime_checkable
class ExportableNet(Protocol):
    """A network with state for training only (feature caches) to turn off before export."""

    def prepare_export(self) -> None:
        """Eval mode, caches off: the exported graph is the plain forward pass."""


@runtime_checkable
class BackboneWithoutGradients(Protocol):
    """A network that runs part of itself without autograd (a frozen transfer backbone, often from a feature cache)."""

    def gradients_through(self) -> AbstractContextManager[None]:
        """Within the block, the forward pass runs with autograd through every layer and no cache (attribution)."""
