"""An epoch's loss and metrics (training, validation or test), gathered for a few microseconds a batch.

Calling Lightning's `self.log` and torchmetrics' `update` on every training batch cost about 0.9 ms of a 12 ms
MNIST step on a 2-core CPU (their per-call bookkeeping, not arithmetic); logging the validation loss and three
metric objects every batch made a 5,000-image MNIST validation 0.63 s against 0.36 s for its forward passes. The
tally keeps the loss as a running sum and the batches' predictions in a short queue that torchmetrics gets many
batches at a time, and the epoch's values are logged once: the same counts, so the same values.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import MetricCollection


class EpochTally:
    """Running loss and queued predictions of one epoch; `metrics` is fed `batches_per_update` at once."""

    def __init__(self, metrics: MetricCollection, batches_per_update: int = 50) -> None:
        self.metrics = metrics
        self.batches_per_update = batches_per_update
        self.loss_sum: Tensor | None = None
        self.samples = 0
        self.queued: list[tuple[Tensor, Tensor]] = []

    def add(self, loss: Tensor, predictions: Tensor, target: Tensor) -> None:
        """`loss` is the batch mean; `predictions` what the metrics take (probabilities, classes or P(class 1))."""
        batch_size = target.shape[0]
        weighted = loss.detach() * batch_size
        self.loss_sum = weighted if self.loss_sum is None else self.loss_sum + weighted
        self.samples += batch_size
        self.queued.append((predictions.detach(), target.detach()))
        if len(self.queued) >= self.batches_per_update:
            self.update_metrics()

    def update_metrics(self) -> None:
        if self.queued:
            predictions, targets = zip(*self.queued, strict=True)
            self.queued = []
            self.metrics.update(torch.cat(predictions), torch.cat(targets))

    @property
    def empty(self) -> bool:
        return self.samples == 0

    def mean_loss(self) -> Tensor:
        """The mean over the epoch's samples so far (a batch of 10 counts a sixth of a batch of 60, as in Lightning)."""
        if self.loss_sum is None:
            raise ValueError("no batch tallied yet")
        return self.loss_sum / self.samples

    def compute_and_reset(self) -> tuple[Tensor, dict[str, Tensor]]:
        """The epoch's mean loss and metric values; the tally starts the next epoch empty."""
        self.update_metrics()
        loss, values = self.mean_loss(), self.metrics.compute()
        self.reset()
        return loss, values

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors (a checkpoint loads with `weights_only=True`): a run stopped mid-epoch and resumed ends
        that epoch with the same training loss and metrics as one never stopped."""
        queued = [torch.cat(column) for column in zip(*self.queued, strict=True)] if self.queued else []
        return {
            "loss_sum": self.loss_sum,
            "samples": self.samples,
            "queued": queued,
            "metrics": {
                name: {
                    key: value.clone() if isinstance(value, Tensor) else list(value)
                    for key, value in m.metric_state.items()
                }
                for name, m in self.metrics.items(keep_base=True)
            },
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """`device`: the model's (a checkpoint is read onto the CPU; the next batches come on the model's device)."""
        self.reset()
        moved = _to(state, device)
        self.loss_sum, self.samples = moved["loss_sum"], int(moved["samples"])
        self.queued = [tuple(moved["queued"])] if moved["queued"] else []
        metrics = dict(self.metrics.items(keep_base=True))
        for name, values in moved["metrics"].items():
            for key, value in values.items():
                setattr(metrics[name], key, value)
            metrics[name]._update_count = 1  # torchmetrics' count of updates: compute() without a warning

    def reset(self) -> None:
        self.metrics.reset()
        self.loss_sum, self.samples, self.queued = None, 0, []


def _to(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [_to(item, device) for item in value]
    return value
