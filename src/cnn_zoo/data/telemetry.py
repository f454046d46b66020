"""Numeric CSVs (NASA SMAP/MSL telemetry, or any table) as 1-D sequences for Conv1D classification.

One row per time step; the features are every column but the label column (the last by default) and
`drop_columns` (or exactly `feature_columns`), the labels integers 0..k-1 with 0 = nominal, or text names mapped
through `class_names`. Files with or without a header line, any delimiter (`csv_table.CsvFormat`). Two modes:

- `row`: each row's feature vector is the sequence, shape (1, features): the notes' reshape to (N, features, 1);
- `window`: `window` consecutive rows of every feature, shape (features, window), labelled by the last row
  (`window_label=last`) or by the most frequent anomaly class in the window (`any`; 0 when none).

Data: either `path` (one CSV, or a list read as consecutive segments of one series; windows never cross files),
split into train/val/test `stratified` (random with `seed`, per class) or `chronological`; or explicit
`train_path`/`val_path`/`test_path` (a missing val/test part is carved out of the training files the same way).
A stratified split of windows draws contiguous blocks of `block_size` rows, never single windows: overlapping
windows in two splits would leak, so no window straddles a split boundary. Standardisation (mean/std per
feature) is fitted on the training rows only, and travels in the spec and the run's `scaler.json`.

The jobs live apart: `csv_table` reads and checks files, `splits` cuts pieces, `windows` makes samples; this
module only assembles them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from cnn_zoo.data.base import ZooDataModule, renamed, require_fraction, require_positive, resolve_dir
from cnn_zoo.data.csv_table import CsvFormat, Segment, read_table
from cnn_zoo.data.spec import DataSpec, DataStats, SequencePreprocessing, plain
from cnn_zoo.data.splits import PARTS, SPLIT_STRATEGIES, split_segments
from cnn_zoo.data.windows import (
    MODES,
    WINDOW_LABELS,
    Windows,
    as_arrays,
    dataset_labels,
    rows_dataset,
    with_differences,
)
from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)

__all__ = ["Segment", "TelemetryDataModule", "Windows", "as_arrays", "split_segments"]


class TelemetryDataModule(ZooDataModule):
    """Rows or sliding windows of a numeric CSV series, standardised with training statistics."""

    def __init__(
        self,
        data_dir: str = "data",
        path: str | list[str] | None = None,
        train_path: str | list[str] | None = None,
        val_path: str | list[str] | None = None,
        test_path: str | list[str] | None = None,
        label_column: str | int | None = None,
        class_names: list[str] | None = None,
        header: bool = True,
        column_names: list[str] | None = None,
        delimiter: str | None = None,
        feature_columns: list[str | int] | None = None,
        drop_columns: list[str | int] | None = None,
        mode: str = "window",
        window: int = 64,
        stride: int = 1,
        window_label: str = "last",
        split: str = "stratified",
        val_size: float = 0.15,
        test_size: float = 0.15,
        block_size: int | None = None,
        folds: int | None = None,
        fold: int = 0,
        differences: bool = False,
        normalization: str = "standard",
        seed: int = 42,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_fraction: float | None = None,  # deprecated: val_size
        test_fraction: float | None = None,  # deprecated: test_size
        standardize: bool | None = None,  # deprecated: normalization=standard|none
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
        self.class_names = [str(n) for n in to_plain(class_names)] if class_names else None
        self.format = CsvFormat.from_config(
            header=header,
            column_names=to_plain(column_names),
            delimiter=delimiter,
            feature_columns=to_plain(feature_columns),
            drop_columns=to_plain(drop_columns),
            label_column=label_column,
        )
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
        val_size = require_fraction("val_size", renamed("val_fraction", "val_size", val_fraction, val_size))
        test_size = require_fraction("test_size", renamed("test_fraction", "test_size", test_fraction, test_size))
        if val_size + test_size >= 1.0:
            raise CnnZooError("data.val_size + data.test_size must leave rows for training (sum < 1)")
        self.fractions = {"val": val_size, "test": test_size}
        default_block = 2 * self.window if mode == "window" else 1
        self.block_size = require_positive("block_size", block_size) if block_size else default_block
        if mode == "window" and self.block_size < self.window:
            raise CnnZooError(f"data.block_size ({self.block_size}) must be at least data.window ({self.window})")
        self.folds = self.check_folds(folds, fold)
        # windows labelled by their last step: a block's first window - 1 rows never end a window of their own
        self.label_offset = self.window - 1 if mode == "window" and window_label == "last" else 0
        self.differences = bool(differences)
        normalization = renamed(
            "standardize", "normalization", standardize, normalization, lambda v: "standard" if v else "none"
        )
        if normalization not in ("standard", "none"):
            raise CnnZooError(
                f"data.normalization must be 'standard' (training mean/std) or 'none', got {normalization!r}"
            )
        self.standardize = normalization == "standard"
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
            names_here, label, segment = read_table(path, self.format, self.class_names)
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
                raise CnnZooError("no validation file and data.val_size=0: set data.val_path or data.val_size > 0")
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
        if self.spec is not None:
            return
        features, pieces = self.load_pieces()
        raw_features = list(features)
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
                    f"raise data.{name}_size" + (f" or check data.{name}_path" if self.files[name] else "")
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
        reading = self.format.to_dict() | {"feature_columns": raw_features, "drop_columns": []}
        self.spec = DataSpec(
            kind="sequence",
            class_names=tuple(self.names(num_classes)),
            input_shape=(in_channels, length),
            input_dtype="float32",
            preprocessing=SequencePreprocessing(
                feature_names=tuple(features),
                mean=tuple(mean.tolist()),
                std=tuple(std.tolist()),
                mode=self.mode,
                window=self.window if self.mode == "window" else None,
                window_label=self.window_label if self.mode == "window" else None,
                differences=self.differences,
                label_column=self.label,
                reading=reading,
            ),
            stats=DataStats(
                class_counts=tuple(train_counts.tolist()),
                split_sizes={name: len(ds) for name, ds in datasets.items()},
                split_class_counts={n: np.bincount(labels[n], minlength=num_classes).tolist() for n in PARTS},
            ),
        )
        log.info(
            "telemetry %s mode: %s samples per split, classes per split %s",
            self.mode,
            self.spec.stats.split_sizes,
            self.spec.stats.split_class_counts,
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
        """`scaler.json`: the training mean/std per feature and how samples were made (also in the spec)."""
        if self.spec is None:
            self.setup("fit")
        prep = self.spec.preprocessing
        scaler = {
            "feature_names": prep.feature_names,
            "label_column": prep.label_column,
            "mean": prep.mean,
            "std": prep.std,
            "mode": prep.mode,
            "window": prep.window if prep.mode == "window" else None,
            "window_label": prep.window_label,
            "class_names": self.spec.class_names,
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "scaler.json").write_text(json.dumps(plain(scaler), indent=2) + "\n")


def as_list(value: str | Sequence[str] | None) -> list[str]:
    value = to_plain(value)
    if value is None or value == "":
        return []
    return [str(value)] if isinstance(value, str | Path) else [str(v) for v in value]
