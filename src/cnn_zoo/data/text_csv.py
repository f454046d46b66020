"""Text classification from your own CSV: one row per document, a text column and a label column.

The same tokenisation, training-split vocabulary and Keras-style padding as the IMDB reviews (`data/text.py`), so
`model=conv1d_text` and every command (evaluate, predict, export, explain) work on it unchanged. One file is split
per class with `seed` (`val_size`, `test_size`); or give the splits as files (`train_path`, `val_path`,
`test_path`), a missing one carved from the training file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cnn_zoo.data.base import ZooDataModule, require_fraction, require_positive, resolve_dir
from cnn_zoo.data.imdb import Sequences
from cnn_zoo.data.splits import stratified_parts
from cnn_zoo.data.text import (
    build_vocabulary,
    check_sides,
    encode,
    pad_sequences,
    text_spec,
    tokenize,
    write_vocabulary,
)
from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)


def read_documents(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """The texts and their labels (as strings) of one CSV; a missing file, column or cell is one line."""
    if not path.is_file():
        raise CnnZooError(f"text CSV not found: {path}; set data.path (or data.train_path) to your file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise CnnZooError(f"cannot read {path} as CSV: {str(err).splitlines()[0] if str(err) else err}") from err
    for option, column in (("text_column", text_column), ("label_column", label_column)):
        if column not in frame.columns:
            raise CnnZooError(f"{path} has no column {column!r} (data.{option}); its columns are {list(frame.columns)}")
    labels = frame[label_column].str.strip()
    if (labels == "").any():
        line = int(np.flatnonzero((labels == "").to_numpy())[0]) + 2
        raise CnnZooError(f"{path}: line {line} has no label in column {label_column!r}; fill or remove that row")
    return frame[text_column].tolist(), labels.tolist()


class TextCsvDataModule(ZooDataModule):
    """Documents of a CSV as (max_len,) int64 word ids; classes are the labels' sorted values (or `class_names`)."""

    def __init__(
        self,
        data_dir: str = "data",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        class_names: list[str] | None = None,
        num_words: int = 10000,
        max_len: int = 200,
        padding: str = "pre",
        truncating: str = "pre",
        val_size: float = 0.15,
        test_size: float = 0.15,
        seed: int = 42,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        if bool(path) == bool(train_path):
            raise CnnZooError("give the documents as data.path=<one CSV> or data.train_path=<CSV> (not both)")
        self.data_dir = resolve_dir(data_dir)
        self.paths = {
            name: self.located(value)
            for name, value in (("train", path or train_path), ("val", val_path), ("test", test_path))
            if value
        }
        self.text_column, self.label_column = str(text_column), str(label_column)
        self.class_names = [str(c) for c in class_names] if class_names else None
        self.num_words = require_positive("num_words", num_words)
        self.max_len = require_positive("max_len", max_len)
        check_sides(padding, truncating)
        self.padding, self.truncating = padding, truncating
        self.fractions = {
            part: require_fraction(f"{part}_size", size)
            for part, size in (("val", val_size), ("test", test_size))
            if part not in self.paths
        }
        self.seed = int(seed)
        self.vocab: list[str] = []

    def located(self, value: str) -> Path:
        """Absolute, or relative to the data folder (`CNN_ZOO_DATA_DIR`) where a file of that name is there."""
        candidate = Path(value).expanduser()
        if not candidate.is_absolute() and (self.data_dir / candidate).is_file():
            return self.data_dir / candidate
        return candidate.resolve()

    def split_documents(self) -> dict[str, tuple[list[str], list[str]]]:
        """Each split's texts and labels: from its own file, or carved from the training file per class."""
        texts, labels = read_documents(self.paths["train"], self.text_column, self.label_column)
        parts = stratified_parts(np.asarray(labels), self.fractions, np.random.default_rng(self.seed))
        splits = {
            name: (
                [t for t, p in zip(texts, parts, strict=True) if p == name],
                [lab for lab, p in zip(labels, parts, strict=True) if p == name],
            )
            for name in ("train", *self.fractions)
        }
        for name in ("val", "test"):
            if name in self.paths:
                splits[name] = read_documents(self.paths[name], self.text_column, self.label_column)
        if not splits["train"][0]:
            raise CnnZooError(f"data.val_size/test_size leave no training documents in {self.paths['train']}")
        return splits

    def label_ids(self, labels: list[str], names: list[str], split: str) -> np.ndarray:
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise CnnZooError(
                f"the {split} split has labels {unknown[:5]} that are not classes {names}; "
                "list every class in data.class_names or fix those rows"
            )
        return np.asarray([index[label] for label in labels], dtype=np.int64)

    def setup(self, stage: str | None = None) -> None:
        if self.spec is not None:
            return
        splits = self.split_documents()
        names = self.class_names or sorted(set(splits["train"][1]))
        if len(names) < 2:
            raise CnnZooError(f"{self.paths['train']}: one class only ({names}); a classifier needs two or more")
        tokens = {name: [tokenize(text) for text in texts] for name, (texts, _) in splits.items()}
        self.vocab = build_vocabulary(tokens["train"], self.num_words)
        sets = {}
        for name, (_, labels) in splits.items():
            ids = pad_sequences(encode(tokens[name], self.vocab), self.max_len, self.padding, self.truncating)
            sets[name] = Sequences(ids, self.label_ids(labels, names, name))
        self.train_set, self.test_set = sets["train"], sets["test"]
        self.val_set = sets["val"] if len(sets["val"]) else sets["test"]
        log.info("documents: %s", {name: len(s) for name, s in sets.items()})
        self.spec = text_spec(
            names,
            self.vocab,
            self.max_len,
            self.padding,
            self.truncating,
            np.bincount(sets["train"].labels, minlength=len(names)).tolist(),
            {name: len(s) for name, s in sets.items()},
        )

    def save_artifacts(self, run_dir: Path) -> None:
        """`vocabulary.txt` beside the run, as for IMDB."""
        if not self.vocab:
            self.setup("fit")
        write_vocabulary(run_dir, self.vocab)
