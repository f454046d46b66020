"""The learning-rate range test's curve, read from the raw losses, and the rate it suggests.

Lightning's `Tuner.lr_find` runs the test (the rate grows every step; the model is restored afterwards), but the
curve it keeps is smoothed with a bias correction one step off (its first point is half the first loss, so the
curve climbs before it falls), and its suggestion is the steepest slope against the *linear* rate, which on a
log-spaced sweep favours the smallest rates: on catsdogs_scratch it suggested 6e-6 for a network that trains well
at 1e-3. Here the module's own hooks record each step's rate and raw loss while the finder runs (Lightning swaps
the trainer's callbacks out for the test, not the module's hooks); the curve is smoothed with a correctly debiased
moving average and the suggestion is the middle of its main fall, fastai's `valley` idea.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L

SUGGESTIONS = ("valley", "steepest")
MIN_POINTS = 5  # fewer finite points than this and no descent can be told from noise
START_SHARE = 0.1  # how far below its first value the smoothed loss must be before its fall counts as begun


@dataclass
class RangeTestCurve:
    """One (rate, raw loss) pair per optimizer step of the range test, in the order they ran."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def smoothed(self, beta: float) -> list[float]:
        """An exponential moving average of the losses, debiased so that its first point is the first loss."""
        average, seen, smoothed = 0.0, 0, []
        for loss in self.losses:
            if math.isfinite(loss):
                average = beta * average + (1 - beta) * loss
                seen += 1
            smoothed.append(average / (1 - beta**seen) if seen else math.nan)
        return smoothed


def main_descent(smoothed: Sequence[float], start_share: float = START_SHARE) -> tuple[int, int] | None:
    """(first, last) step of the smoothed curve's fall: from the last step still at the starting level (within
    `start_share` of the whole drop) to the lowest point. None when the loss never falls below its start.

    A flat, noisy start is not part of the fall (a longest-falling-subsequence valley runs through it and lands
    a decade low on mnist_cnn), and the divergence after the lowest point is not either."""
    finite = [i for i, v in enumerate(smoothed) if math.isfinite(v)]
    if not finite:
        return None
    lowest = min(finite, key=lambda i: (smoothed[i], i))
    level = smoothed[finite[0]]
    drop = level - smoothed[lowest]
    if drop <= 0:
        return None
    first = max(i for i in finite if i <= lowest and smoothed[i] >= level - start_share * drop)
    return first, lowest


def valley_suggestion(curve: RangeTestCurve, beta: float) -> float | None:
    """The rate halfway (in steps: geometrically, on the usual exponential sweep) along the smoothed curve's main
    fall: past the flat start where nothing is learnt yet, well short of the lowest point where it starts to
    diverge. fastai's `valley` suggestion has the same aim."""
    if sum(math.isfinite(x) for x in curve.losses) < MIN_POINTS:
        return None
    descent = main_descent(curve.smoothed(beta))
    if descent is None:
        return None
    first, last = descent
    return curve.lrs[first + (last - first) // 2]


@contextmanager
def recording_range_test(model: L.LightningModule) -> Iterator[RangeTestCurve]:
    """Record the rate and raw loss of every optimizer step run inside the block (the range test's fit).

    The module's batch hooks are wrapped for the block only; with gradient accumulation one pair is kept per
    optimizer step (the last batch of each accumulation), as the finder's own record does."""
    curve = RangeTestCurve()
    original_start, original_end = model.on_train_batch_start, model.on_train_batch_end

    def steps(batch_idx: int) -> bool:
        return (batch_idx + 1) % model.trainer.accumulate_grad_batches == 0

    def on_train_batch_start(batch: Any, batch_idx: int) -> Any:
        result = original_start(batch, batch_idx)
        if steps(batch_idx):
            curve.lrs.append(float(model.trainer.optimizers[0].param_groups[0]["lr"]))
        return result

    def on_train_batch_end(outputs: Any, batch: Any, batch_idx: int) -> None:
        original_end(outputs, batch, batch_idx)
        if steps(batch_idx):
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            curve.losses.append(float(loss.detach()) if loss is not None else math.nan)

    model.on_train_batch_start = on_train_batch_start  # type: ignore[method-assign]
    model.on_train_batch_end = on_train_batch_end  # type: ignore[method-assign]
    try:
        yield curve
    finally:
        del model.on_train_batch_start, model.on_train_batch_end  # the class's own methods again
    if len(curve.lrs) != len(curve.losses):  # a step that started but never ended (the finder stopped it)
        curve.lrs = curve.lrs[: len(curve.losses)]


def plot_range_test(curve: RangeTestCurve, beta: float, suggestion: float, log_scale: bool, path: Path) -> None:
    """The raw and smoothed loss against the rate, the suggestion marked: what to read before trusting it."""
    from matplotlib.figure import Figure  # its own Agg canvas: no pyplot state, no display

    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.subplots()
    smoothed = curve.smoothed(beta)
    axes.plot(curve.lrs, curve.losses, color="0.75", linewidth=1, label="loss per step")
    axes.plot(curve.lrs, smoothed, color="C0", label=f"smoothed (beta {beta})")
    descent = main_descent(smoothed)
    if descent is not None:
        axes.axvspan(curve.lrs[descent[0]], curve.lrs[descent[1]], color="C0", alpha=0.08, label="its main fall")
    axes.axvline(suggestion, color="C3", linestyle="--", label=f"suggestion {suggestion:.3g}")
    finite = [x for x in curve.losses if math.isfinite(x)]
    start, lowest = next((x for x in smoothed if math.isfinite(x)), 1.0), min(finite, default=0.0)
    margin = max(start - lowest, 0.25 * abs(start), 1e-3)
    axes.set_ylim(lowest - 0.1 * margin, start + margin)  # the divergence, often 1000x the start, clipped
    if log_scale:
        axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.set_title("learning-rate range test")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
