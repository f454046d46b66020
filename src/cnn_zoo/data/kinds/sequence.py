"""Sequences: CSV rows of numeric features, standardised, as windows (features, time) or single rows (1, features)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cnn_zoo.data.kinds.base import DataKind, RawInput, Sample, register_kind
from cnn_zoo.runtime.errors import CnnZooError

if TYPE_CHECKING:
    from cnn_zoo.data.spec import DataSpec


@dataclass(frozen=True)
class SequencePreprocessing:
    """CSV rows -> chosen feature columns -> [differences] -> standardised -> rows (1, F) or windows (F, window).

    `reading` holds the CSV options the training files were read with (header, delimiter, columns), so a new
    file of the same shape is read the same way.
    """

    kind: ClassVar[str] = "sequence"
    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mode: str = "window"
    window: int | None = None
    window_label: str | None = None
    differences: bool = False
    label_column: str | None = None
    reading: dict[str, Any] = field(default_factory=dict)

    @property
    def raw_features(self) -> list[str]:
        """The CSV columns read (before the `diff_` features are appended)."""
        return [n for n in self.feature_names if not (self.differences and n.startswith("diff_"))]

    def samples(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of raw features (n, F) of one contiguous series -> (inputs, index of the row each one ends at).

        The windows are a strided view of the rows (no copy): take a contiguous copy of the ones you use."""
        from cnn_zoo.data.windows import with_differences

        if self.differences:
            x = with_differences(x)
        x = ((x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)
        if self.mode == "row":
            return x[:, None, :], np.arange(len(x))
        window = int(self.window or 1)
        if len(x) < window:
            raise CnnZooError(f"{len(x)} rows are fewer than one window ({window} rows, as the checkpoint was trained)")
        ends = np.arange(window - 1, len(x))
        return np.lib.stride_tricks.sliding_window_view(x, window, axis=0), ends  # (n - w + 1, F, w)


@dataclass(frozen=True)
class Series:
    """One CSV read as the checkpoint was trained: its inputs (a view), the data row each ends at, the labels."""

    path: Path
    inputs: np.ndarray  # (n, F, w) windows or (n, 1, F) rows
    ends: np.ndarray  # the row each input ends at
    index: Any  # the 0-based data row of each row read
    labels: np.ndarray | None  # per row, when the file has the label column
    first_line: int  # file line of the first data row


@register_kind
class SequenceKind(DataKind):
    name = "sequence"
    label = "sequences"
    preprocessing = SequencePreprocessing
    reads = "a CSV with the training feature columns"

    def network_inputs(self, spec: DataSpec) -> dict[str, Any]:
        return {"in_channels": self.in_channels(spec)}

    def from_facts(self, facts: Mapping[str, Any], config: Mapping[str, Any]) -> SequencePreprocessing:
        names = tuple(str(n) for n in facts["feature_names"])
        return SequencePreprocessing(
            feature_names=names,
            mean=tuple(float(v) for v in facts["mean"]),
            std=tuple(float(v) for v in facts["std"]),
            mode=str(facts.get("mode", "window")),
            window=facts.get("window"),
            window_label=facts.get("window_label"),
            differences=bool(facts.get("differences", config.get("differences", any(n[:5] == "diff_" for n in names)))),
            label_column=facts.get("label_column"),
            reading=dict(facts.get("reading") or {}),
        )

    def summary(self, spec: DataSpec) -> list[tuple[str, str]]:
        prep = spec.preprocessing
        return [("mode", prep.mode)] + ([("window", str(prep.window))] if prep.mode == "window" else [])

    # ------------------------------------------------------------------ raw inputs
    def read(self, spec: DataSpec, source: RawInput) -> Series:
        """The one CSV of `source`: the training feature columns by name, read with the training CSV options."""
        from cnn_zoo.data.csv_table import CsvFormat, label_values, numeric_column, read_frame

        prep = spec.preprocessing
        path = self.files(self.existing(source), lambda p: p.suffix.lower() in (".csv", ".tsv", ".txt"), (".csv",))[0]
        reading = {k: v for k, v in prep.reading.items() if k in ("column_names", "delimiter")}
        fmt = CsvFormat.from_config(header=prep.reading.get("header", True), **reading)
        frame = read_frame(path, fmt)
        names = prep.raw_features
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise CnnZooError(
                f"{path} lacks the training feature columns {missing} (columns: {list(frame.columns)}); "
                "predict and explain need the columns the checkpoint was trained on"
            )
        for column in names:
            frame[column] = numeric_column(frame[column], column, path, fmt.first_line)
        label = prep.label_column or prep.reading.get("label_column") or frame.columns[-1]  # read_table's default
        labels = None
        if label is not None and label in frame.columns and label not in names:
            labels = label_values(frame[label], label, path, fmt.first_line, list(spec.class_names))
        inputs, ends = prep.samples(frame[list(names)].to_numpy(dtype=np.float32))
        return Series(path, inputs, ends, frame.index, labels, fmt.first_line)

    def sample(self, spec: DataSpec, series: Series, i: int) -> Sample:
        """Input `i` of `series` (a contiguous copy), named after the rows it covers."""
        import torch

        end = int(series.ends[i])
        first = end - series.inputs.shape[-1] + 1 if spec.preprocessing.mode == "window" else end
        stem, line = series.path.stem, series.first_line
        if first == end:
            name, where = f"{stem}_row{end}", f"{series.path}, row {end}"
        else:
            name = f"{stem}_rows{first}-{end}"
            where = f"{series.path}, rows {first}..{end} (lines {first + line}..{end + line})"
        label, prep = None, spec.preprocessing
        if series.labels is not None and (prep.mode == "row" or prep.window_label == "last"):
            label = int(series.labels[end])
            label = label if 0 <= label < spec.num_classes else None
        x = torch.from_numpy(np.ascontiguousarray(series.inputs[i])).unsqueeze(0).float()
        return Sample({"row": int(series.index[end])}, name, where, x, label=label)

    def samples(self, spec: DataSpec, source: RawInput) -> Iterator[Sample]:
        """One sample per window end (every row in row mode), id = the 0-based data row it ends at."""
        series = self.read(spec, source)
        for i in range(len(series.ends)):
            yield self.sample(spec, series, i)

    def explained(self, spec: DataSpec, source: RawInput, limit: int, start: int | None = None) -> list[Sample]:
        """One window (or row): the one starting at `start`, else the first that ends on an anomalous row (the
        interesting one), else the last."""
        series = self.read(spec, source)
        count = len(series.ends)
        what = "windows" if spec.preprocessing.mode == "window" else "rows"
        if start is None:
            anomalous = np.flatnonzero(series.labels[series.ends] > 0) if series.labels is not None else []
            first = int(anomalous[0]) if len(anomalous) else (count - 1 if what == "windows" else 0)
        else:
            first = int(start)
        if not 0 <= first < count:
            raise CnnZooError(f"start={start} is outside {series.path}'s {what}; choose 0..{count - 1}")
        return [self.sample(spec, series, first)][:limit]

    # ------------------------------------------------------------------ showing inputs
    def series_names(self, spec: DataSpec) -> list[str]:
        """The features of a window, or the single channel of a row."""
        if spec.preprocessing.mode == "window":
            return [str(n) for n in spec.preprocessing.feature_names]
        return ["row (features along the axis)"]

    def step_names(self, spec: DataSpec) -> list[str] | None:
        """In `mode=row` the positions are the columns; windows' positions are time steps (None)."""
        if spec.preprocessing.mode == "row":
            return [str(n) for n in spec.preprocessing.feature_names] or None
        return None

    def labelled_step(self, spec: DataSpec) -> int | None:
        prep = spec.preprocessing
        return -1 if prep.mode == "window" and prep.window_label == "last" else None
