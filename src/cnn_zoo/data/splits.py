"""Splitting a labelled series into train/val/test pieces without leaks: stratified blocks, blocked k-fold,
chronological, or per episode. Pieces are contiguous runs of one file, so no window built inside a piece
straddles a split boundary or two files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnn_zoo.data.csv_table import Segment

PARTS = ("train", "val", "test")
SPLIT_STRATEGIES = ("stratified", "chronological", "episodes")


def dominant_class(labels: np.ndarray) -> int:
    """The most frequent anomaly class (ties: the smaller index), 0 when every label is nominal."""
    anomalies = labels[labels > 0]
    return int(np.bincount(anomalies).argmax()) if len(anomalies) else 0


def stratified_parts(labels: np.ndarray, fractions: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """A part name per unit: per class, a seeded shuffle cut by `fractions`; the rest is `train`.

    A class with at least one unit per part gets at least one in each, so rare anomalies reach val and test.
    """
    parts = np.full(len(labels), "train", dtype=object)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        wanted = [name for name, f in fractions.items() if f > 0]
        start = 0
        for name in wanted:
            count = round(len(members) * fractions[name])
            if count == 0 and len(members) > len(wanted):
                count = 1
            parts[members[start : start + count]] = name
            start += count
    return parts


def fold_parts(labels: np.ndarray, val_fraction: float, folds: int, fold: int, rng: np.random.Generator) -> np.ndarray:
    """Blocked k-fold: a part name per unit. Per class, the units are dealt round-robin into `folds` folds from a
    random start (the same for every `fold` of one seed); fold `fold` is `test`, a stratified `val_fraction` of
    the others `val`, the rest `train` (a class with a single unit always trains). Over the k folds every other
    unit is tested exactly once: with a handful of
    anomaly blocks, pooled out-of-fold predictions measure far more of them than one held-out part does.
    """
    assigned = np.empty(len(labels), dtype=int)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        assigned[members] = (int(rng.integers(folds)) + np.arange(len(members))) % folds
        if len(members) == 1:  # one unit cannot be both learned and tested: it always trains
            assigned[members] = -1
    parts = np.full(len(labels), "test", dtype=object)
    rest = np.flatnonzero(assigned != fold)
    parts[rest] = stratified_parts(labels[rest], {"val": val_fraction}, rng)
    return parts


def runs(values: np.ndarray) -> list[tuple[int, int, Any]]:
    """Maximal runs of one value: (start, stop, value)."""
    edges = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts, stops = np.r_[0, edges], np.r_[edges, len(values)]
    return [(int(a), int(b), values[a]) for a, b in zip(starts, stops, strict=True)]


def chronological_parts(length: int, fractions: dict[str, float]) -> np.ndarray:
    """A part name per position 0..length-1: train first, then each of `fractions` in order."""
    position = np.arange(length) / max(length, 1)
    parts = np.full(length, "train", dtype=object)
    low = 1.0 - sum(fractions.values())
    for name, fraction in fractions.items():
        parts[(position >= low) & (position < low + fraction)] = name
        low += fraction
    return parts


def split_segments(
    segments: Sequence[Segment],
    fractions: dict[str, float],
    strategy: str,
    block_size: int,
    seed: int,
    label_offset: int = 0,
    folds: tuple[int, int] | None = None,
) -> dict[str, list[Segment]]:
    """Cut the segments into contiguous pieces per part.

    chronological: the series (segments in order) cut at the fractions, train first;
    episodes: every run of one label (an anomaly episode, or the nominal stretch between two) cut the same way,
    so each class with a long enough episode reaches every part, learned from an episode's start and tested
    on its continuation;
    stratified: blocks of `block_size` rows drawn per class with `seed`. A block's class is the dominant anomaly
    of its rows from `label_offset` on: with windows labelled by their last step (offset window - 1), the rows
    that end a window inside the block, so a block drawn for a class yields windows of that class.
    `folds` = (k, i): the stratified blocks dealt into k folds, fold i the test part (see `fold_parts`).
    """
    row_parts: list[np.ndarray] = []
    if strategy == "chronological":
        series = chronological_parts(sum(len(s) for s in segments), fractions)
        offsets = np.cumsum([0] + [len(s) for s in segments])
        row_parts = [series[offsets[i] : offsets[i + 1]] for i in range(len(segments))]
    elif strategy == "episodes":
        for segment in segments:
            parts = np.empty(len(segment), dtype=object)
            for start, stop, _ in runs(segment.y):
                parts[start:stop] = chronological_parts(stop - start, fractions)
            row_parts.append(parts)
    else:
        blocks = [(i, start) for i, s in enumerate(segments) for start in range(0, len(s), block_size)]
        block_labels = np.array(
            [dominant_class(segments[i].y[start + label_offset : start + block_size]) for i, start in blocks]
        )
        rng = np.random.default_rng(seed)
        if folds:
            block_parts = fold_parts(block_labels, fractions["val"], *folds, rng)
        else:
            block_parts = stratified_parts(block_labels, fractions, rng)
        row_parts = [np.empty(len(s), dtype=object) for s in segments]
        for (i, start), part in zip(blocks, block_parts, strict=True):
            row_parts[i][start : start + block_size] = part
    pieces: dict[str, list[Segment]] = {name: [] for name in PARTS}
    for segment, parts in zip(segments, row_parts, strict=True):
        for start, stop, name in runs(parts):
            pieces[str(name)].append(segment.cut(start, stop))
    return pieces

