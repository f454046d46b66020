"""fastai's `ClassificationInterpretation` for cnn_zoo: the most confident mistakes and the most confused pairs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Mistake:
    """A wrong test prediction: `index` into the samples seen, its (unweighted) cross-entropy loss."""

    index: int
    target: int
    predicted: int
    probability: float  # of the predicted class
    loss: float  # -log P(true class)


def class_probabilities(probs: Tensor) -> Tensor:
    """(N, C) from the Classifier's probabilities: (N,) P(class 1) when binary, (N, C) otherwise."""
    probs = probs.detach().float()
    return torch.stack([1 - probs, probs], dim=1) if probs.ndim == 1 else probs


def sample_losses(probs: Tensor, targets: Tensor) -> Tensor:
    """Per-sample cross-entropy -log P(target): the binary and the multi-class loss alike, without class weights."""
    full = class_probabilities(probs)
    picked = full.gather(1, targets.long().view(-1, 1).to(full.device)).squeeze(1)
    return -torch.log(picked.clamp(min=1e-12))


def top_losses(probs: Tensor, targets: Tensor, count: int, offset: int = 0) -> list[Mistake]:
    """The `count` wrong predictions with the highest loss, highest first (`offset` shifts the indices)."""
    full = class_probabilities(probs)
    predicted = full.argmax(dim=1)
    targets = targets.long().to(full.device)
    losses = sample_losses(full, targets)
    wrong = torch.nonzero(predicted != targets).flatten()
    order = wrong[torch.argsort(losses[wrong], descending=True, stable=True)][: max(0, int(count))]
    return [
        Mistake(int(i) + offset, int(targets[i]), int(predicted[i]), float(full[i, predicted[i]]), float(losses[i]))
        for i in order.tolist()
    ]


def most_confused(predicted: Tensor, targets: Tensor, min_count: int = 1) -> list[tuple[int, int, int]]:
    """(true, predicted, count) for every wrong pair seen at least `min_count` times, most frequent first."""
    pairs = Counter(
        (int(t), int(p)) for t, p in zip(targets.tolist(), predicted.tolist(), strict=True) if int(t) != int(p)
    )
    ranked = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))
    return [(true, pred, count) for (true, pred), count in ranked if count >= min_count]


def confused_markdown(rows: list[tuple[int, int, int]], names: list[str], total: int) -> str:
    lines = ["| true | predicted | count | share of test samples |", "|---|---|---|---|"]
    lines += [f"| {names[t]} | {names[p]} | {c} | {c / max(total, 1):.2%} |" for t, p, c in rows]
    if not rows:
        lines.append("| - | - | 0 | no mistakes |")
    return "\n".join(lines)


def mistakes_markdown(mistakes: list[Mistake], names: list[str], openings: list[str] | None = None) -> str:
    header = "| rank | test sample | true | predicted | probability | loss |" + (" opening |" if openings else "")
    lines = [header, "|---|---|---|---|---|---|" + ("---|" if openings else "")]
    for rank, m in enumerate(mistakes, 1):
        row = f"| {rank} | {m.index} | {names[m.target]} | {names[m.predicted]} | {m.probability:.3f} | {m.loss:.3f} |"
        if openings:
            row += f" {openings[rank - 1].replace('|', '/')} |"
        lines.append(row)
    return "\n".join(lines)
