"""Numeric CSVs (NASA SMAP/MSL telemetry, or any table) as 1-D sequences for Conv1D classification.

One row per time step; the features are every column but the label column (the last by default), the labels
integers 0..k-1 with 0 = nominal. Two modes:

- `row`: each row's feature vector is the sequence, shape (1, features): the notes' reshape to (N, features, 1);
- `window`: `window` consecutive rows of every feature, shape (features, window), labelled by the last row
  (`window_label=last`) or by the most frequent anomaly class in the window (`any`; 0 when none).

Data: either `path` (one CSV, or a list read as consecutive segments of one series; windows never cross files),
split into train/val/test `stratified` (random with `seed`, per class) or `chronological`; or explicit
`train_path`/`val_path`/`test_path` (a missing val/test part is carved out of the training files the same way).
A stratified split of windows draws contiguous blocks of `block_size` rows, never single windows: overlapping
windows in two splits would leak, so no window straddles a split boundary. Standardisation (mean/std per
feature) is fitted on the training rows only, and travels in the facts and the run's `scaler.json`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, TensorDataset

from cnn_zoo.config import to_plain
from cnn_zoo.data.base import ZooDataModule, require_positive, resolve_dir
from cnn_zoo.errors import CnnZooError

log = logging.getLogger(__name__)

MODES = ("row", "window")
SPLIT_STRATEGIES = ("stratified", "chronological", "episodes")
WINDOW_LABELS = ("last", "any")
PARTS = ("train", "val", "test")


@dataclass
class Segment:
    """A contiguous run of rows of one file: features (n, F), labels (n,), and where it came from."""

    x: np.ndarray
    y: np.ndarray
    source: str
    first_line: int = 2  # file line of the first row (the header is line 1)

    def __len__(self) -> int:
        return len(self.y)

    def cut(self, start: int, stop: int) -> Segment:
        return Segment(self.x[start:stop], self.y[start:stop], self.source, self.first_line + start)


# ---------------------------------------------------------------------- reading and checking a CSV
def read_table(path: Path, label_column: str | None) -> tuple[list[str], str, Segment]:
    """(feature names, label column, rows) of one CSV, every cell checked: numbers only, no gaps, labels >= 0."""
    if not path.is_file():
        raise CnnZooError(
            f"telemetry CSV not found: {path}; set data.path (or data.train_path/test_path), or make the NASA "
            "channels under <data_dir>/telemetry/ with `cnn-zoo-prepare telemetry`"
        )
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise CnnZooError(f"cannot read {path} as CSV: {str(err).splitlines()[0] if str(err) else err}") from err
    if frame.empty or frame.shape[1] < 2:
        raise CnnZooError(f"{path} needs a header and rows with at least one feature column and a label column")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    label = columns[-1] if label_column is None else str(label_column)
    if label not in columns:
        raise CnnZooError(f"{path} has no label column {label!r} (columns: {columns}); set data.label_column")
    for column in columns:
        frame[column] = numeric_column(frame[column], column, path)
    labels = frame[label].to_numpy(dtype=np.float64)
    bad = np.flatnonzero((labels < 0) | (labels != np.round(labels)))
    if len(bad):
        row = int(bad[0])
        raise CnnZooError(
            f"{path}: label column {label!r}, line {row + 2}: {labels[row]:g} is not a class index "
            "(labels are integers 0..k-1, 0 = nominal)"
        )
    features = [c for c in columns if c != label]
    x = frame[features].to_numpy(dtype=np.float32)
    return features, label, Segment(x, labels.astype(np.int64), str(path))


def numeric_column(values: pd.Series, column: str, path: Path) -> pd.Series:
    """The column as numbers; the first non-numeric or empty cell is an error naming its line."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = values.notna() & numbers.isna()
    if text.any():
        row = int(np.flatnonzero(text.to_numpy())[0])
        raise CnnZooError(
            f"{path}: column {column!r}, line {row + 2}: {values.iloc[row]!r} is not a number; fix or remove that row"
        )
    missing = numbers.isna().to_numpy() | ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise CnnZooError(
            f"{path}: column {column!r}, line {row + 2} is empty, NaN or infinite ({int(missing.sum())} such cells in "
            "that column); fill or drop those rows"
        )
    return numbers


# ---------------------------------------------------------------------- splitting
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


def with_differences(x: np.ndarray) -> np.ndarray:
    """Each feature's change since the previous row appended as extra features (0 on a piece's first row).

    Computed inside a piece, never across a split boundary: a slope or a jump, which a window shows only
    as a small difference between raw values, becomes a feature of its own.
    """
    return np.concatenate([x, np.diff(x, axis=0, prepend=x[:1])], axis=1)


# ---------------------------------------------------------------------- samples
def window_starts(length: int, window: int, stride: int) -> range:
    return range(0, length - window + 1, stride)


def window_label(labels: np.ndarray, rule: str) -> int:
    return int(labels[-1]) if rule == "last" else dominant_class(labels)


class Windows(Dataset):
    """Sliding windows over contiguous pieces, as (features, window) float32 tensors; made on access."""

    def __init__(self, pieces: Sequence[Segment], window: int, stride: int, rule: str) -> None:
        self.pieces = [torch.from_numpy(np.ascontiguousarray(p.x.T)) for p in pieces]
        self.window = window
        self.index = [(i, s) for i, p in enumerate(pieces) for s in window_starts(len(p), window, stride)]
        labels = [window_label(pieces[i].y[s : s + window], rule) for i, s in self.index]
        self.labels = torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        piece, start = self.index[item]
        return self.pieces[piece][:, start : start + self.window], self.labels[item]


def rows_dataset(pieces: Sequence[Segment]) -> TensorDataset:
    """Every row as a (1, features) sequence: the notes' reshape."""
    x = np.concatenate([p.x for p in pieces]) if pieces else np.zeros((0, 1), np.float32)
    y = np.concatenate([p.y for p in pieces]) if pieces else np.zeros(0, np.int64)
    return TensorDataset(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y))


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    return dataset.labels if isinstance(dataset, Windows) else dataset.tensors[1]


def as_arrays(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """All inputs (N, channels, length) and labels (N,) of a split: for scikit-learn baselines."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0].numpy(), dataset.tensors[1].numpy()
    x = torch.stack([dataset[i][0] for i in range(len(dataset))]) if len(dataset) else torch.zeros(0)
    return x.numpy(), dataset_labels(dataset).numpy()


# ---------------------------------------------------------------------- the datamodule
class TelemetryDataModule(ZooDataModule):
    """Rows or sliding windows of a numeric CSV series, standardised with training statistics."""

    def __init__(
        self,
        data_dir: str = "data",
        path: str | list[str] | None = None,
        train_path: str | list[str] | None = None,
        val_path: str | list[str] | None = None,
        test_path: str | list[str] | None = None,
        label_column: str | None = None,
        class_names: list[str] | None = None,
        mode: str = "window",
        window: int = 64,
        stride: int = 1,
        window_label: str = "last",
        split: str = "stratified",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        block_size: int | None = None,
        folds: int | None = None,
        fold: int = 0,
        differences: bool = False,
        standardize: bool = True,
        seed: int = 42,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        self.data_dir = resolve_dir(data_dir)
        self.files = {
            name: as_list(value) for name, value in zip(PARTS, (train_path, val_path, test_path), strict=True)
        }
        self.path = as_list(path)
        if bool(self.path) == bool(self.files["train"]):
            raise CnnZooError(
                "set either data.path (one CSV, or a list, split into train/val/test) or data.train_path "
                "(with optional data.val_path / data.test_path), not both or neither"
            )
        if not self.files["train"] and (self.files["val"] or self.files["test"]):
            raise CnnZooError("data.val_path / data.test_path need data.train_path")
        self.label_column = label_column
        self.class_names = [str(n) for n in to_plain(class_names)] if class_names else None
        for name, value, allowed in (
            ("mode", mode, MODES),
            ("split", split, SPLIT_STRATEGIES),
            ("window_label", window_label, WINDOW_LABELS),
        ):
            if value not in allowed:
                raise CnnZooError(f"data.{name} must be one of {list(allowed)}, got {value!r}")
        self.mode, self.split, self.window_label = mode, split, window_label
        self.window = require_positive("window", window) if mode == "window" else 1
        self.stride = require_positive("stride", stride)
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= float(value) < 1.0:
                raise CnnZooError(f"data.{name} must be in [0, 1), got {value!r}")
        if float(val_fraction) + float(test_fraction) >= 1.0:
            raise CnnZooError("data.val_fraction + data.test_fraction must leave rows for training (sum < 1)")
        self.fractions = {"val": float(val_fraction), "test": float(test_fraction)}
        default_block = 2 * self.window if mode == "window" else 1
        self.block_size = require_positive("block_size", block_size) if block_size else default_block
        if mode == "window" and self.block_size < self.window:
            raise CnnZooError(f"data.block_size ({self.block_size}) must be at least data.window ({self.window})")
        self.folds = self.check_folds(folds, fold)
        # windows labelled by their last step: a block's first window - 1 rows never end a window of their own
        self.label_offset = self.window - 1 if mode == "window" and window_label == "last" else 0
        self.differences = bool(differences)
        self.standardize = bool(standardize)
        self.seed = int(seed)
        self.pieces: dict[str, list[Segment]] = {}

    def check_folds(self, folds: int | None, fold: int) -> tuple[int, int] | None:
        """(k, i) for a blocked k-fold split of data.path, or None."""
        if folds is None:
            return None
        if int(folds) < 2 or not 0 <= int(fold) < int(folds):
            raise CnnZooError(f"data.folds must be >= 2 and data.fold in 0..folds-1, got folds={folds}, fold={fold}")
        if self.split != "stratified" or not self.path:
            raise CnnZooError("data.folds needs data.path and split=stratified (blocks dealt into folds)")
        return int(folds), int(fold)

    # ------------------------------------------------------------------ files
    def locate(self, name: str) -> Path:
        """Absolute, or relative to data_dir (else to the working folder)."""
        candidate = Path(name).expanduser()
        if candidate.is_absolute():
            return candidate
        under_data = self.data_dir / candidate
        return under_data if under_data.exists() or not candidate.exists() else candidate.resolve()

    def read(self, names: list[str]) -> tuple[list[str], list[Segment]]:
        features: list[str] | None = None
        segments = []
        for name in names:
            path = self.locate(name)
            names_here, label, segment = read_table(path, self.label_column)
            if features is not None and names_here != features:
                raise CnnZooError(
                    f"{path} has feature columns {names_here}, unlike {segments[0].source} ({features}); "
                    "every file of one dataset needs the same columns"
                )
            if self.mode == "window" and len(segment) < self.window:
                raise CnnZooError(
                    f"{path} has {len(segment)} rows, fewer than one window (data.window={self.window}); "
                    "use a smaller window or mode=row"
                )
            features, self.label = names_here, label
            segments.append(segment)
        assert features is not None
        return features, segments

    def load_pieces(self) -> tuple[list[str], dict[str, list[Segment]]]:
        """Feature names and the contiguous pieces of each part (train/val/test)."""
        if self.path:
            features, segments = self.read(self.path)
            self.check_classes(segments, "data.path")
            return features, split_segments(
                segments, self.fractions, self.split, self.block_size, self.seed, self.label_offset, self.folds
            )
        features, train = self.read(self.files["train"])
        pieces: dict[str, list[Segment]] = {"train": train, "val": [], "test": []}
        carve = {}
        for name in ("val", "test"):
            if self.files[name]:
                columns, pieces[name] = self.read(self.files[name])
                if columns != features:
                    raise CnnZooError(
                        f"data.{name}_path has feature columns {columns}, unlike data.train_path ({features})"
                    )
            else:
                carve[name] = self.fractions[name]
        if carve:
            if not any(carve.values()):
                raise CnnZooError("no validation file and data.val_fraction=0: set data.val_path or val_fraction > 0")
            carved = split_segments(train, carve, self.split, self.block_size, self.seed, self.label_offset)
            pieces["train"] = carved["train"]
            for name in carve:
                pieces[name] = carved[name]
        return features, pieces

    def check_classes(self, segments: Sequence[Segment], where: str) -> None:
        present = np.unique(np.concatenate([s.y for s in segments]))
        if len(present) < 2:
            raise CnnZooError(
                f"{where} ({', '.join(s.source for s in segments)}) has a single class in column {self.label!r} "
                f"({int(present[0])}); classification needs at least two (0 = nominal, 1.. = anomalies)"
            )

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self.facts:
            return
        features, pieces = self.load_pieces()
        if self.differences:
            features = features + [f"diff_{name}" for name in features]
            for part in pieces.values():
                for piece in part:
                    piece.x = with_differences(piece.x)
        mean, std = self.fit_scaler(pieces["train"], len(features))
        for part in pieces.values():
            for piece in part:
                piece.x = (piece.x - mean) / std
        self.pieces = pieces
        datasets = {name: self.dataset(pieces[name]) for name in PARTS}
        labels = {name: dataset_labels(ds).numpy() for name, ds in datasets.items()}
        num_classes = self.count_classes(labels)
        for name in PARTS:
            if not len(datasets[name]):
                raise CnnZooError(
                    f"the {name} split has no {'windows' if self.mode == 'window' else 'rows'}: "
                    f"{'use a smaller data.window or data.block_size, or ' if self.mode == 'window' else ''}"
                    f"raise data.{name}_fraction" + (f" or check data.{name}_path" if self.files[name] else "")
                )
        train_counts = np.bincount(labels["train"], minlength=num_classes)
        missing = [self.names(num_classes)[c] for c in range(num_classes) if train_counts[c] == 0]
        if missing:
            unit = "windows" if self.mode == "window" else "rows"
            if not self.path:
                how = (
                    "real telemanom *_train.csv files are all nominal: split the channel's test file "
                    "(or train+test as data.path=[...]) instead"
                )
            elif self.split == "chronological":
                how = "the chronological split put all their rows after the training part: use split=episodes"
            else:
                how = (
                    f"their episodes are short for the {self.split} split's pieces (data.window={self.window}, "
                    f"data.block_size={self.block_size}): use a smaller data.window or data.block_size"
                )
            raise CnnZooError(
                f"classes {missing} have no training {unit} ({self.describe_source()}); every class needs "
                f"training examples: {how}"
            )
        for name in ("val", "test"):
            absent = [self.names(num_classes)[c] for c in np.setdiff1d(np.arange(num_classes), labels[name])]
            if absent:
                log.warning(
                    "the %s split has no samples of classes %s: its per-class metrics are undefined", name, absent
                )
        self.train_set, self.val_set, self.test_set = datasets["train"], datasets["val"], datasets["test"]
        in_channels = len(features) if self.mode == "window" else 1
        length = self.window if self.mode == "window" else len(features)
        self.facts = {
            "kind": "sequence",
            "num_classes": num_classes,
            "class_names": self.names(num_classes),
            "class_counts": train_counts.tolist(),
            "split_sizes": {name: len(ds) for name, ds in datasets.items()},
            "split_class_counts": {n: np.bincount(labels[n], minlength=num_classes).tolist() for n in PARTS},
            "mode": self.mode,
            "window": self.window if self.mode == "window" else None,
            "window_label": self.window_label if self.mode == "window" else None,
            "feature_names": features,
            "label_column": self.label,
            "in_channels": in_channels,
            "input_shape": [in_channels, length],
            "input_dtype": "float32",
            "mean": mean.tolist(),
            "std": std.tolist(),
        }
        log.info(
            "telemetry %s mode: %s samples per split, classes per split %s",
            self.mode,
            self.facts["split_sizes"],
            self.facts["split_class_counts"],
        )

    def describe_source(self) -> str:
        return "data.path=" + ",".join(self.path) if self.path else "data.train_path=" + ",".join(self.files["train"])

    def fit_scaler(self, train: Sequence[Segment], n_features: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean/std of the training rows only; constant features keep std 1 (no division by 0)."""
        if not self.standardize:
            return np.zeros(n_features, np.float32), np.ones(n_features, np.float32)
        rows = np.concatenate([p.x for p in train]).astype(np.float64)
        mean, std = rows.mean(axis=0), rows.std(axis=0)
        std[std < 1e-8] = 1.0
        return mean.astype(np.float32), std.astype(np.float32)

    def dataset(self, pieces: Sequence[Segment]) -> Dataset:
        if self.mode == "window":
            return Windows(pieces, self.window, self.stride, self.window_label)
        return rows_dataset(pieces)

    def count_classes(self, labels: dict[str, np.ndarray]) -> int:
        """k: the largest label + 1 (names beyond it in data.class_names are unused)."""
        top = max((int(values.max()) for values in labels.values() if len(values)), default=0)
        num_classes = top + 1
        if self.class_names is not None and len(self.class_names) < num_classes:
            raise CnnZooError(
                f"label {top} found ({self.describe_source()}) but data.class_names has only {len(self.class_names)} "
                f"names {self.class_names}; give one name per label 0..{top}"
            )
        if num_classes < 2:
            raise CnnZooError(f"{self.describe_source()} has a single class (0); classification needs at least two")
        return num_classes

    def names(self, num_classes: int) -> list[str]:
        if self.class_names is not None:
            return self.class_names[:num_classes]
        return [str(c) for c in range(num_classes)]

    def save_artifacts(self, run_dir: Path) -> None:
        """`scaler.json`: the training mean/std per feature and how samples were made (also in the facts)."""
        if not self.facts:
            self.setup("fit")
        keys = ("feature_names", "label_column", "mean", "std", "mode", "window", "window_label", "class_names")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "scaler.json").write_text(json.dumps({k: self.facts[k] for k in keys}, indent=2) + "\n")


def as_list(value: str | Sequence[str] | None) -> list[str]:
    value = to_plain(value)
    if value is None or value == "":
        return []
    return [str(value)] if isinstance(value, str | Path) else [str(v) for v in value]
