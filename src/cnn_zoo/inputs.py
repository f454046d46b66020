"""Raw inputs users bring to `predict`, per data kind, turned into tensors by the spec's preprocessing.

Each reader yields `Batch`es: the ids of the samples (a file path, a CSV row) and their input tensor, so the
output table can say which prediction belongs to which input. Images are decoded in chunks (bounded memory);
unreadable image files are collected, not fatal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cnn_zoo.data.csv_table import CsvFormat, read_features, sniff_delimiter
from cnn_zoo.data.spec import DataSpec, SequencePreprocessing, TextPreprocessing
from cnn_zoo.errors import CnnZooError
from cnn_zoo.inference import image_files


@dataclass
class Batch:
    ids: list[dict[str, Any]]  # one dict of id columns per sample (path, row)
    x: torch.Tensor


@dataclass
class Unreadable:
    files: list[tuple[Path, str]] = field(default_factory=list)


def existing(input_path: Any, what: str) -> Path:
    if not input_path:
        raise CnnZooError(f"input is required: input=<{what}>")
    path = Path(str(input_path)).expanduser().resolve()
    if not path.exists():
        raise CnnZooError(f"input not found: {path}; pass input=<{what}>")
    return path


def image_batches(spec: DataSpec, cfg: Any, unreadable: Unreadable) -> Iterator[Batch]:
    from cnn_zoo.data.image_folder import scan

    transform = spec.preprocessing.transform()
    files = image_files(cfg.input)
    chunk_size = max(1, int(cfg.chunk_size))
    for start in range(0, len(files), chunk_size):
        chunk = [(path, -1) for path in files[start : start + chunk_size]]
        good, arrays, bad = scan(chunk, transform.decode, int(cfg.num_workers))
        unreadable.files += bad
        for low in range(0, len(good), int(cfg.batch_size)):
            part = slice(low, low + int(cfg.batch_size))
            x = torch.stack([transform(array) for array in arrays[part]])
            yield Batch([{"path": str(path)} for path, _ in good[part]], x)
    if not unreadable.files or len(unreadable.files) < len(files):
        return
    raise CnnZooError(f"none of the {len(files)} image file(s) under {cfg.input} could be read")


def read_texts(cfg: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """A `.txt` file, a folder of them (recursive), or a CSV column (`input_column`)."""
    path = existing(cfg.input, "a .txt file, a folder of .txt files, or a .csv with input_column=<column>")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise CnnZooError(f"no .txt files under {path}; pass a text file, a folder of them or a CSV")
        return [{"path": str(p)} for p in files], [p.read_text(encoding="utf-8", errors="replace") for p in files]
    if path.suffix.lower() in (".csv", ".tsv"):
        column = cfg.get("input_column") or "text"
        try:
            frame = pd.read_csv(path, sep=sniff_delimiter(path), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise CnnZooError(f"cannot read {path} as CSV: {str(err).splitlines()[0]}") from err
        if column not in frame.columns:
            raise CnnZooError(
                f"{path} has no column {column!r} (columns: {list(frame.columns)}); pass input_column=<column>"
            )
        return [{"row": int(i)} for i in frame.index], frame[column].tolist()
    return [{"path": str(path)}], [path.read_text(encoding="utf-8", errors="replace")]


def text_batches(spec: DataSpec, cfg: Any) -> Iterator[Batch]:
    assert isinstance(spec.preprocessing, TextPreprocessing)
    ids, texts = read_texts(cfg)
    size = int(cfg.batch_size)
    for low in range(0, len(texts), size):
        x = torch.from_numpy(spec.preprocessing.encode(texts[low : low + size]))
        yield Batch(ids[low : low + size], x)


def sequence_batches(spec: DataSpec, cfg: Any) -> Iterator[Batch]:
    """One sample per window end (every row in row mode), id = the 0-based data row it ends at."""
    prep = spec.preprocessing
    assert isinstance(prep, SequencePreprocessing)
    path = existing(cfg.input, "a CSV with the training feature columns")
    reading = {k: v for k, v in prep.reading.items() if k in ("header", "column_names", "delimiter")}
    fmt = CsvFormat.from_config(
        header=reading.get("header", True), **{k: v for k, v in reading.items() if k != "header"}
    )
    x, index = read_features(path, fmt, prep.raw_features)
    samples, ends = prep.samples(x)
    size = int(cfg.batch_size)
    for low in range(0, len(samples), size):
        rows = ends[low : low + size]
        x = torch.from_numpy(np.ascontiguousarray(samples[low : low + size]))
        yield Batch([{"row": int(index[r])} for r in rows], x)


def batches(spec: DataSpec, cfg: Any, unreadable: Unreadable) -> Iterator[Batch]:
    if spec.kind == "image":
        return image_batches(spec, cfg, unreadable)
    if spec.kind == "text":
        return text_batches(spec, cfg)
    return sequence_batches(spec, cfg)
