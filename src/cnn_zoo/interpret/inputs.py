"""The one adapter between the interpretation tools and a checkpoint's data spec.

Everything `explain`, the top-loss grids and the renderers need to know of the data (its kind, class names,
how a raw image / review / CSV becomes the network's input, how an input is shown back) is read here and
nowhere else: the checkpoint's `DataSpec` and its preprocessing object, as `predict` and `export` use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cnn_zoo.data.spec import DataSpec
from cnn_zoo.data.text import tokenize
from cnn_zoo.errors import CnnZooError

KINDS = ("image", "text", "sequence")
WHAT = {
    "image": "an image file (jpg, png, bmp, gif, webp, tif) or a folder of them",
    "text": "a review as a .txt file or a folder of .txt files",
    "sequence": "a telemetry CSV with the training columns",
}


@dataclass(frozen=True)
class Sample:
    """One input ready for the network, with what a figure needs to show it as it was read."""

    name: str  # short, file-name safe: output files are named after it
    source: str  # where it came from (path, and window for sequences)
    x: Tensor  # (1, ...) exactly what the network takes
    image: np.ndarray | None = None  # (H, W, C) floats in [0, 1]
    tokens: list[str] | None = None  # the word at every input position ("" for padding)
    series: np.ndarray | None = None  # (channels, length) standardised values: x[0], as the network sees them
    label: int | None = None  # the true class when the input says it (a CSV's label column)


class DataView:
    """What a checkpoint's data spec says about its inputs: kind, classes, preprocessing and display."""

    def __init__(self, data: dict[str, Any] | DataSpec) -> None:
        self.spec = data if isinstance(data, DataSpec) else DataSpec.from_dict(data or {})
        self.facts = self.spec.facts()  # the flat view: mean/std, vocabulary, feature names, window
        self.kind = str(self.facts.get("kind", "image"))
        count = int(self.facts.get("num_classes", len(self.facts.get("class_names", [])) or 2))
        self.class_names = [str(n) for n in self.facts.get("class_names", range(count))]
        self.num_classes = len(self.class_names)

    # ------------------------------------------------------------------ classes
    def class_index(self, target: str | int) -> int:
        """A class given by name or index; a wrong one names the valid choices."""
        text = str(target)
        if text in self.class_names:
            return self.class_names.index(text)
        if text.lstrip("-").isdigit() and 0 <= int(text) < self.num_classes:
            return int(text)
        raise CnnZooError(f"target={target!r} is not a class of this checkpoint; choose one of {self.class_names}")

    # ------------------------------------------------------------------ reading inputs
    def load(self, input_path: str | Path | None, limit: int, start: int | None = None) -> list[Sample]:
        """The network inputs `input_path` holds (at most `limit`): image files, reviews or one CSV's window."""
        if not input_path:
            raise CnnZooError(f"input is required: input=<{WHAT.get(self.kind, 'file')}>")
        path = Path(str(input_path)).expanduser().resolve()
        if not path.exists():
            raise CnnZooError(f"input not found: {path}; pass input=<{WHAT.get(self.kind, 'file')}>")
        if self.kind == "image":
            from cnn_zoo.data.transforms import IMAGE_EXTENSIONS, is_image_file  # albumentations: images only

            return [self.image_sample(p) for p in self.files(path, is_image_file, IMAGE_EXTENSIONS)[:limit]]
        if self.kind == "text":
            reviews = self.files(path, lambda p: p.suffix.lower() == ".txt", (".txt",))
            return [self.text_sample(p) for p in reviews[:limit]]
        if self.kind == "sequence":
            files = self.files(path, lambda p: p.suffix.lower() == ".csv", (".csv",))
            return self.sequence_samples(files[0], start)[:limit]
        raise CnnZooError(f"this checkpoint's data kind {self.kind!r} cannot be explained; kinds: {list(KINDS)}")

    def files(self, path: Path, accept: Any, suffixes: Sequence[str]) -> list[Path]:
        if path.is_file():
            if not accept(path):
                raise CnnZooError(
                    f"{path.name} is not what this {self.kind} model reads ({', '.join(suffixes)} expected); "
                    f"pass input=<{WHAT[self.kind]}>"
                )
            return [path]
        found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and accept(p))
        if not found:
            raise CnnZooError(
                f"no {', '.join(suffixes)} files under {path}; this {self.kind} model reads {WHAT[self.kind]}"
            )
        return found

    def image_sample(self, path: Path) -> Sample:
        transform = self.spec.preprocessing.transform()
        try:
            array = transform.decode(path)
        except (OSError, ValueError) as err:
            raise CnnZooError(f"cannot read image {path}: {err}") from err
        x = transform(array).unsqueeze(0).float()
        return Sample(path.stem, str(path), x, image=array.astype(np.float32) / 255.0)

    def text_sample(self, path: Path) -> Sample:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise CnnZooError(f"cannot read review {path} as UTF-8 text: {err}") from err
        if not tokenize(text):
            raise CnnZooError(f"{path} holds no words to classify")
        ids = torch.from_numpy(self.spec.preprocessing.encode([text])).long()
        return Sample(path.stem, str(path), ids, tokens=self.words(ids[0]))

    def words(self, ids: Tensor) -> list[str]:
        """The vocabulary's word at each position; padding is ""."""
        vocab = self.facts.get("vocab") or []
        pad = self.pad_index
        return ["" if i == pad else (vocab[i] if 0 <= i < len(vocab) else "?") for i in ids.flatten().tolist()]

    def sequence_samples(self, path: Path, start: int | None) -> list[Sample]:
        """One window (or row) of `path`, standardised with the training statistics and built as in training."""
        from cnn_zoo.data.csv_table import CsvFormat, read_table  # pandas: sequences only
        from cnn_zoo.data.windows import window_starts, with_differences

        names = list(self.facts["feature_names"])
        raw = [n for n in names if not n.startswith("diff_")]
        reading = dict(self.facts.get("reading") or {})
        reading.setdefault("label_column", self.facts.get("label_column"))
        features, _, segment = read_table(path, CsvFormat.from_config(**reading), self.class_names)
        if features != raw:
            raise CnnZooError(f"{path} has columns {features}; this checkpoint was trained on {raw} (same order)")
        x = with_differences(segment.x) if len(names) > len(raw) else segment.x
        x = (x - np.asarray(self.facts["mean"], np.float32)) / np.asarray(self.facts["std"], np.float32)
        if self.facts.get("mode") == "window":
            window = int(self.facts["window"])
            starts = list(window_starts(len(segment), window, 1))
            if not starts:
                raise CnnZooError(f"{path} has {len(segment)} rows, fewer than one window of {window}")
            first = self.default_start(segment.y, window) if start is None else int(start)
            if first not in starts:
                raise CnnZooError(f"start={start} is outside {path}'s windows; choose 0..{starts[-1]}")
            series = x[first : first + window].T.astype(np.float32)
            label = int(segment.y[first + window - 1]) if self.facts.get("window_label") == "last" else None
            where = f"{path}, rows {first}..{first + window - 1} (lines {first + 2}..{first + window + 1})"
            name = f"{path.stem}_rows{first}-{first + window - 1}"
            tensor = torch.from_numpy(np.ascontiguousarray(series)).unsqueeze(0)
        else:
            anomalous = np.flatnonzero(segment.y > 0)
            first = int(anomalous[0]) if start is None and len(anomalous) else int(start or 0)
            if not 0 <= first < len(segment):
                raise CnnZooError(f"start={start} is outside {path}'s rows; choose 0..{len(segment) - 1}")
            series = x[first : first + 1].T.astype(np.float32)  # (features, 1)
            label, where, name = int(segment.y[first]), f"{path}, row {first}", f"{path.stem}_row{first}"
            tensor = torch.from_numpy(np.ascontiguousarray(series.T)).unsqueeze(0)  # (1, 1, features)
        if label is not None and not 0 <= label < self.num_classes:
            label = None
        return [Sample(name, where, tensor.float(), series=tensor[0].numpy(), label=label)]

    @staticmethod
    def default_start(labels: np.ndarray, window: int) -> int:
        """The window that ends on the first anomalous row, else the last window: the interesting one."""
        anomalous = np.flatnonzero(labels[window - 1 :] > 0)
        return int(anomalous[0]) if len(anomalous) else len(labels) - window

    @property
    def series_names(self) -> list[str]:
        """A sequence input's channel names: the features of a window, or the single channel of a row."""
        if self.facts.get("mode") == "window":
            return [str(n) for n in self.facts.get("feature_names", [])]
        return ["row (features along the axis)"]

    @property
    def step_names(self) -> list[str] | None:
        """What a sequence input's positions are: the columns in `mode=row` (the axis is the features), else None
        (time steps)."""
        if self.facts.get("kind") == "sequence" and self.facts.get("mode") == "row":
            return [str(n) for n in self.facts.get("feature_names", [])] or None
        return None

    # ------------------------------------------------------------------ showing inputs
    def displayable(self, images: Tensor) -> Tensor:
        """Network inputs back to [0, 1] images: the datamodule's mean/std undone (or min-max scaled)."""
        images = images.detach().float().cpu()
        mean, std = self.facts.get("mean"), self.facts.get("std")
        if mean is not None and std is not None and self.kind == "image":
            shape = (1, -1, 1, 1)
            images = images * torch.tensor(std, dtype=images.dtype).view(shape) + torch.tensor(mean).view(shape)
            return images.clamp(0.0, 1.0)
        low, high = images.amin(), images.amax()
        return (images - low) / (high - low).clamp(min=1e-8)

    def is_image_batch(self, x: Any) -> bool:
        return self.kind == "image" and isinstance(x, Tensor) and x.ndim == 4 and x.is_floating_point()

    @property
    def pad_index(self) -> int:
        return int(self.facts.get("pad_index", 0))

    @property
    def has_vocabulary(self) -> bool:
        return self.kind == "text" and bool(self.facts.get("vocab"))
