"""The range test's curve (raw losses, smoothed without Lightning's off-by-one) and its suggestion."""

from __future__ import annotations

import copy
import math
import random

import lightning as L
import pytest
import torch
from lightning.pytorch.tuner import Tuner
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnn_zoo.training.lr_range import RangeTestCurve, main_descent, recording_range_test, valley_suggestion


def sweep(steps: int = 100, low: float = 1e-6, high: float = 1.0) -> list[float]:
    return [low * (high / low) ** (i / (steps - 1)) for i in range(steps)]


def course_like_curve(noise: float, seed: int = 0) -> RangeTestCurve:
    """Flat at 2.3 up to 1e-4, falling (linearly in log rate) to 0.5 at 1e-2, then diverging; noisy."""
    rng, lrs, losses = random.Random(seed), sweep(), []
    for lr in lrs:
        position = math.log10(lr)
        if position < -4:
            loss = 2.3
        elif position < -2:
            loss = 2.3 - 1.8 * (position + 4) / 2
        else:
            loss = 0.5 * 10 ** (2 * (position + 2))
        losses.append(loss + rng.gauss(0, noise))
    return RangeTestCurve(lrs, losses)


def test_the_smoothed_curve_starts_at_the_first_loss_and_skips_what_is_not_finite() -> None:
    curve = RangeTestCurve([1e-3, 2e-3, 3e-3, 4e-3], [2.0, math.nan, 1.0, 1.0])
    smoothed = curve.smoothed(0.9)
    assert smoothed[0] == pytest.approx(2.0) and smoothed[1] == pytest.approx(2.0)  # Lightning's: 1.01
    assert smoothed[2] == pytest.approx((0.9 * 0.2 + 0.1) / (1 - 0.81))
    assert 1.0 < smoothed[3] < smoothed[2]


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_the_suggestion_lies_inside_the_fall_not_on_the_flat_start_or_the_divergence(noise: float) -> None:
    curve = course_like_curve(noise)
    first, last = main_descent(curve.smoothed(0.9))
    assert 1e-4 <= curve.lrs[first] <= 3e-4 and 5e-3 <= curve.lrs[last] <= 2e-2
    suggestion = valley_suggestion(curve, 0.9)
    assert 3e-4 < suggestion < 3e-3  # about the geometric middle of 1e-4 .. 1e-2


def test_no_suggestion_when_the_loss_never_falls_or_too_few_steps_ran() -> None:
    rising = RangeTestCurve(sweep(20), [1.0 + i / 10 for i in range(20)])
    assert main_descent(rising.smoothed(0.9)) is None and valley_suggestion(rising, 0.9) is None
    assert valley_suggestion(RangeTestCurve(sweep(4), [2.0, 1.5, 1.0, 0.5]), 0.9) is None


class Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 1)
        self.lr = 1e-3
        self.ended: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.ended.append(batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def test_the_recorded_curve_is_the_finders_rates_and_its_raw_losses(tmp_path) -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    data = DataLoader(TensorDataset(x, y), batch_size=8)
    model = Regression()
    untrained = copy.deepcopy(model.net)
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=2, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
    with recording_range_test(model) as curve:
        finder = Tuner(trainer).lr_find(model, train_dataloaders=data, min_lr=1e-4, max_lr=1.0, num_training=40,
                                        early_stop_threshold=None)  # fmt: skip
    assert len(curve.lrs) == len(curve.losses) == 40 and curve.lrs == pytest.approx(finder.results["lr"])
    assert len(model.ended) == 40  # the module's own hook ran as well
    # the first raw loss is the untrained model's on the first batch; Lightning's first point is about half of it
    assert curve.losses[0] == pytest.approx(float(nn.functional.mse_loss(untrained(x[:8]), y[:8])), rel=1e-5)
    assert finder.results["loss"][0] == pytest.approx(curve.losses[0] * 0.02 / (1 - 0.98**2))
    assert curve.smoothed(0.98)[0] == curve.losses[0]
    assert model.on_train_batch_end.__func__ is Regression.on_train_batch_end  # the class's hooks again
