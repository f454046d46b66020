"""The epoch tally gives the values per-batch torchmetrics updates and a sample-weighted mean loss give."""

from __future__ import annotations

import pytest
import torch

from cnn_zoo.training.classifier import make_metrics
from cnn_zoo.training.epoch_tally import EpochTally


@pytest.mark.parametrize("num_classes", [2, 5])
def test_tally_equals_updating_the_metrics_every_batch(num_classes: int) -> None:
    generator = torch.Generator().manual_seed(0)
    sizes = [8] * 9 + [3]  # a short last batch
    tally = EpochTally(make_metrics(num_classes, with_auroc=False), batches_per_update=4)
    reference = make_metrics(num_classes, with_auroc=False)
    losses, targets = torch.rand(len(sizes), generator=generator), []
    for loss, size in zip(losses, sizes, strict=True):
        target = torch.randint(0, num_classes, (size,), generator=generator)
        if num_classes == 2:
            predictions = torch.rand(size, generator=generator)
        else:
            predictions = torch.randint(0, num_classes, (size,), generator=generator)
        tally.add(loss, predictions, target)
        reference.update(predictions, target)
        targets.append(target)
    assert len(tally.queued) == 2  # 10 batches, 4 at a time: two wait for the epoch's end

    loss, values = tally.compute_and_reset()
    expected = reference.compute()
    assert values.keys() == expected.keys()
    assert all(torch.equal(values[name], expected[name]) for name in expected)
    weights = torch.tensor(sizes, dtype=torch.float32)
    assert loss == pytest.approx(float((losses * weights).sum() / weights.sum()))
    assert tally.empty and not tally.queued


def test_an_empty_tally_has_no_mean_loss() -> None:
    tally = EpochTally(make_metrics(3, with_auroc=False))
    with pytest.raises(ValueError, match="no batch tallied"):
        tally.mean_loss()
