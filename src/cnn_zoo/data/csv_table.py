"""Reading and checking numeric CSV tables (telemetry, sensors): the options of the files users bring.

`CsvFormat` says how a file is laid out (header or not, delimiter or sniffed, which columns are features, which is
the label, by name or position); `read_table` reads one file with it and checks every cell, so each problem is
one line naming the file, the line and the column. The same format reads new files at `predict` time.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnn_zoo.runtime.errors import CnnZooError

Column = str | int  # a name, or a position (0-based; negative from the end)


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


@dataclass(frozen=True)
class CsvFormat:
    """How the CSV files are laid out (`data.header`, `data.column_names`, `data.delimiter`, columns)."""

    header: bool = True  # false: the first line is data; names from `column_names` (else 0, 1, 2, ...)
    column_names: tuple[str, ...] | None = None
    delimiter: str | None = None  # None: sniffed from the file's first lines (, ; tab | space)
    feature_columns: tuple[Column, ...] | None = None  # None: every column but the label and `drop_columns`
    drop_columns: tuple[Column, ...] = ()  # e.g. a timestamp or id column
    label_column: Column | None = None  # None: the last column

    @classmethod
    def from_config(cls, **values: Any) -> CsvFormat:
        def columns(value: Any) -> tuple[Column, ...] | None:
            if value is None:
                return None
            return tuple(value) if isinstance(value, list | tuple) else (value,)

        if values.get("header") not in (True, False):
            header = values.get("header")
            raise CnnZooError(f"data.header must be true (first line = column names) or false, got {header!r}")
        names = columns(values.get("column_names"))
        return cls(
            header=bool(values["header"]),
            column_names=tuple(str(n) for n in names) if names else None,
            delimiter=values.get("delimiter") or None,
            feature_columns=columns(values.get("feature_columns")),
            drop_columns=columns(values.get("drop_columns")) or (),
            label_column=values.get("label_column"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def first_line(self) -> int:
        return 2 if self.header else 1


def sniff_delimiter(path: Path) -> str:
    """The delimiter of `path` from its first lines (`,` when the sniffer cannot tell).

    A space only where none of `,;\t|` fits: in a CSV of texts (reviews), the spaces between words would
    otherwise look like the most regular delimiter of the sample.
    """
    with path.open(encoding="utf-8", errors="replace") as handle:
        sample = handle.read(8192)
    for delimiters in (",;\t|", " "):
        try:
            return csv.Sniffer().sniff(sample, delimiters=delimiters).delimiter
        except csv.Error:
            continue
    return ","


def resolve_column(column: Column, columns: list[str], path: Path, option: str) -> str:
    """A column named or numbered by the user -> its name; an unknown one is an error listing the columns."""
    if isinstance(column, int) or (isinstance(column, str) and column.lstrip("-").isdigit() and column not in columns):
        position = int(column)
        if -len(columns) <= position < len(columns):
            return columns[position]
        raise CnnZooError(f"{path}: {option}={column} is out of range ({len(columns)} columns: {columns})")
    if str(column) not in columns:
        what = "label column" if option == "data.label_column" else f"column {column!r} for"
        named = f"{what} {column!r}" if option == "data.label_column" else f"{what} {option}"
        raise CnnZooError(f"{path} has no {named} (columns: {columns}); set {option}")
    return str(column)


def read_frame(path: Path, fmt: CsvFormat) -> pd.DataFrame:
    """The file as a table of strings-or-numbers, columns named as `fmt` says."""
    if not path.is_file():
        raise CnnZooError(
            f"telemetry CSV not found: {path}; set data.path (or data.train_path/test_path), or make the NASA "
            "channels under <data_dir>/telemetry/ with `cnn-zoo-prepare telemetry`"
        )
    delimiter = fmt.delimiter or sniff_delimiter(path)
    try:
        frame = pd.read_csv(path, sep=delimiter, header=0 if fmt.header else None, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise CnnZooError(f"cannot read {path} as CSV: {str(err).splitlines()[0] if str(err) else err}") from err
    if fmt.column_names:
        if len(fmt.column_names) != frame.shape[1]:
            raise CnnZooError(
                f"{path} has {frame.shape[1]} columns (delimiter {delimiter!r}) but data.column_names names "
                f"{len(fmt.column_names)}: {list(fmt.column_names)}; give one name per column"
            )
        frame.columns = list(fmt.column_names)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def feature_columns(frame: pd.DataFrame, fmt: CsvFormat, label: str | None, path: Path) -> list[str]:
    columns = list(frame.columns)
    dropped = {resolve_column(c, columns, path, "data.drop_columns") for c in fmt.drop_columns}
    if fmt.feature_columns is not None:
        return [resolve_column(c, columns, path, "data.feature_columns") for c in fmt.feature_columns]
    return [c for c in columns if c != label and c not in dropped]


def read_table(
    path: Path, fmt: CsvFormat, class_names: Sequence[str] | None = None
) -> tuple[list[str], str, Segment]:
    """(feature names, label column, rows) of one CSV, every cell checked: numbers only, no gaps, labels >= 0.

    Text labels (e.g. `nominal`, `fault`) are mapped to their index in `class_names`.
    """
    frame = read_frame(path, fmt)
    columns = list(frame.columns)
    if frame.empty or frame.shape[1] < 2:
        raise CnnZooError(
            f"{path} needs rows with at least one feature column and a label column (columns: {columns})"
        )
    label = columns[-1]
    if fmt.label_column is not None:
        label = resolve_column(fmt.label_column, columns, path, "data.label_column")
    features = feature_columns(frame, fmt, label, path)
    if not features:
        raise CnnZooError(f"{path}: no feature columns left (columns: {columns}); check data.drop_columns")
    for column in features:
        frame[column] = numeric_column(frame[column], column, path, fmt.first_line)
    labels = label_values(frame[label], label, path, fmt.first_line, class_names)
    x = frame[features].to_numpy(dtype=np.float32)
    return features, label, Segment(x, labels, str(path), fmt.first_line)


def read_features(path: Path, fmt: CsvFormat, names: Sequence[str]) -> tuple[np.ndarray, pd.Index]:
    """The feature columns `names` (the training ones) of a new file, checked: what `predict` reads."""
    frame = read_frame(path, fmt)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise CnnZooError(
            f"{path} lacks the training feature columns {missing} (columns: {list(frame.columns)}); "
            "predict needs the columns the checkpoint was trained on"
        )
    for column in names:
        frame[column] = numeric_column(frame[column], column, path, fmt.first_line)
    return frame[list(names)].to_numpy(dtype=np.float32), frame.index


def label_values(
    values: pd.Series, column: str, path: Path, first_line: int, class_names: Sequence[str] | None
) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    if values.notna().all() and numbers.isna().any():  # text labels: through class_names
        if not class_names:
            row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
            raise CnnZooError(
                f"{path}: label column {column!r}, line {row + first_line}: {values.iloc[row]!r} is not a class index; "
                "name the classes with data.class_names=[...] (text labels map to their position) or use 0..k-1"
            )
        index = {str(name): i for i, name in enumerate(class_names)}
        mapped = values.astype(str).str.strip().map(index)
        if mapped.isna().any():
            row = int(np.flatnonzero(mapped.isna().to_numpy())[0])
            raise CnnZooError(
                f"{path}: label column {column!r}, line {row + first_line}: {values.iloc[row]!r} is not one of "
                f"data.class_names {list(class_names)}; add it there or fix that row"
            )
        return mapped.to_numpy(dtype=np.int64)
    numbers = numeric_column(values, column, path, first_line)
    labels = numbers.to_numpy(dtype=np.float64)
    bad = np.flatnonzero((labels < 0) | (labels != np.round(labels)))
    if len(bad):
        row = int(bad[0])
        raise CnnZooError(
            f"{path}: label column {column!r}, line {row + first_line}: {labels[row]:g} is not a class index "
            "(labels are integers 0..k-1, 0 = nominal)"
        )
    return labels.astype(np.int64)


def numeric_column(values: pd.Series, column: str, path: Path, first_line: int = 2) -> pd.Series:
    """The column as numbers; the first non-numeric or empty cell is an error naming its line."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = values.notna() & numbers.isna()
    if text.any():
        row = int(np.flatnonzero(text.to_numpy())[0])
        raise CnnZooError(
            f"{path}: column {column!r}, line {row + first_line}: {values.iloc[row]!r} is not a number; "
            "fix or remove that row, or leave the column out with data.drop_columns"
        )
    missing = numbers.isna().to_numpy() | ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise CnnZooError(
            f"{path}: column {column!r}, line {row + first_line} is empty, NaN or infinite ({int(missing.sum())} such "
            "cells in that column); fill or drop those rows"
        )
    return numbers
