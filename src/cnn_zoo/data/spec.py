"""The data contract: what a datamodule tells the rest of the project after `setup()`.

`DataSpec` (frozen, typed) holds three things, kept apart:
- what shapes the network: kind, input shape/dtype, classes, and the per-kind inputs (`network_inputs()`);
- `preprocessing`: one object per kind that owns the evaluation transform from a raw input (an image file, a
  text, CSV rows) to a tensor, the one `evaluate`, `predict`, `export` and TensorBoard use;
- `stats`: class counts and split sizes (for class weights and reports; never for the network's shape).

It travels inside checkpoints as plain values (`to_dict`/`from_dict`, `torch.load(weights_only=True)`), and
`from_dict` also reads the flat `facts` dicts of checkpoints written before this contract existed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

import numpy as np

from cnn_zoo.errors import CnnZooError

Kind = Literal["image", "text", "sequence"]
CONTRACT_VERSION = 2  # 1 = the flat `facts` dict of earlier checkpoints


def num_outputs_for(num_classes: int) -> int:
    """Two classes are one logit (binary cross-entropy), as in the course; more get one logit each."""
    return 1 if num_classes == 2 else num_classes


@dataclass(frozen=True)
class ImagePreprocessing:
    """File -> resized uint8 array (color mode, size) -> (x/255 - mean)/std as a CHW float tensor.

    `resize` is the interpolation; `crop_pct` None squashes the whole image to `size` (Keras' loaders), a number
    resizes the shorter side to size / crop_pct and takes the centre `size` (timm's and torchvision's evaluation).
    """

    kind: ClassVar[str] = "image"
    size: tuple[int, int]
    color_mode: str = "rgb"  # rgb | grayscale | rgba (Keras' names)
    normalization: str = "rescale"
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize: str = "bilinear"
    crop_pct: float | None = None

    @property
    def channels(self) -> int:
        return {"grayscale": 1, "rgb": 3, "rgba": 4}[self.color_mode]

    def transform(self, augment: Sequence[Any] = ()) -> Any:
        """The per-file transform (`decode` a path, then call on the array); `augment` only for training."""
        from cnn_zoo.data.transforms import ImageTransform

        return ImageTransform(self, list(augment))


@dataclass(frozen=True)
class TextPreprocessing:
    """Text -> tokens (`cnn_zoo.data.text.tokenize`) -> vocabulary ids -> padded/truncated to `max_len`."""

    kind: ClassVar[str] = "text"
    vocab: tuple[str, ...]
    max_len: int
    padding: str = "pre"
    truncating: str = "pre"
    pad_index: int = 0
    oov_index: int = 1
    tokenizer: str = ""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, max_len) int64 ids, exactly as the training reviews were encoded."""
        from cnn_zoo.data.text import encode, pad_sequences, tokenize

        ids = encode([tokenize(text) for text in texts], self.vocab)
        return pad_sequences(ids, self.max_len, self.padding, self.truncating, dtype=np.int64)


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
        """Rows of raw features (n, F) of one contiguous series -> (inputs, index of the row each one ends at)."""
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
        windows = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)  # (n - w + 1, F, w)
        return np.ascontiguousarray(windows), ends


Preprocessing = ImagePreprocessing | TextPreprocessing | SequencePreprocessing
PREPROCESSING: dict[str, type] = {
    cls.kind: cls for cls in (ImagePreprocessing, TextPreprocessing, SequencePreprocessing)
}


@dataclass(frozen=True)
class DataStats:
    """Counts about the splits: class weights and reports read them; they never shape the network."""

    class_counts: tuple[int, ...] | None = None  # training samples per class
    split_sizes: dict[str, int] = field(default_factory=dict)
    split_class_counts: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    """What a datamodule produces after `setup()`; see the module docstring."""

    kind: Kind
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    input_dtype: str
    preprocessing: Preprocessing
    stats: DataStats = field(default_factory=DataStats)
    train_augmentation: bool = False  # training images change every epoch (transfer nets then skip their cache)
    datamodule: dict[str, Any] | None = None  # the resolved data config: `evaluate` rebuilds the test data from it

    def __post_init__(self) -> None:
        if self.preprocessing.kind != self.kind:
            raise ValueError(f"a {self.kind} spec needs {self.kind} preprocessing, got {type(self.preprocessing)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """The network's outputs (`num_outputs_for`)."""
        return num_outputs_for(self.num_classes)

    @property
    def in_channels(self) -> int:
        """Image channels, or sequence channels (features in window mode, 1 in row mode); text has none."""
        return int(self.input_shape[0]) if self.kind != "text" else 0

    def network_inputs(self) -> dict[str, Any]:
        """Every input a network class may declare (`data_inputs`), by name; only those declared are passed."""
        inputs: dict[str, Any] = {
            "num_outputs": self.num_outputs,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
        }
        prep = self.preprocessing
        if isinstance(prep, ImagePreprocessing):
            inputs |= {
                "in_channels": self.in_channels,
                "input_size": list(prep.size),
                "normalization": prep.normalization,
                "train_augmentation": self.train_augmentation,
            }
        elif isinstance(prep, TextPreprocessing):
            inputs["vocab_size"] = len(prep.vocab)
        else:
            inputs["in_channels"] = self.in_channels
        return inputs

    def with_datamodule(self, config: dict[str, Any]) -> DataSpec:
        from dataclasses import replace

        return replace(self, datamodule=config)

    # ------------------------------------------------------------------ plain values (checkpoints, JSON)
    def to_dict(self) -> dict[str, Any]:
        """Plain values; the keys `kind`, `class_names`, `num_classes`, `input_shape`, `input_dtype` at the top."""
        return {
            "contract": CONTRACT_VERSION,
            "kind": self.kind,
            "class_names": list(self.class_names),
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            "preprocessing": plain(asdict(self.preprocessing)),
            "stats": plain(asdict(self.stats)),
            "train_augmentation": self.train_augmentation,
            "datamodule": self.datamodule,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataSpec:
        """From `to_dict()`, or from a flat `facts` dict of an older checkpoint."""
        if "contract" not in data:
            return from_facts(data)
        kind = data["kind"]
        prep_cls = PREPROCESSING[kind]
        prep_values = dict(data["preprocessing"])
        for f in fields(prep_cls):
            if f.name in prep_values and isinstance(prep_values[f.name], list):
                prep_values[f.name] = tuple(prep_values[f.name])
        stats = dict(data.get("stats") or {})
        if stats.get("class_counts") is not None:
            stats["class_counts"] = tuple(stats["class_counts"])
        return cls(
            kind=kind,
            class_names=tuple(str(n) for n in data["class_names"]),
            input_shape=tuple(int(v) for v in data["input_shape"]),
            input_dtype=str(data["input_dtype"]),
            preprocessing=prep_cls(**prep_values),
            stats=DataStats(**stats),
            train_augmentation=bool(data.get("train_augmentation", False)),
            datamodule=data.get("datamodule"),
        )

    def facts(self) -> dict[str, Any]:
        """The flat view of earlier versions (`datamodule.facts`, `data.json`): read-only, for old readers."""
        flat: dict[str, Any] = {
            "kind": self.kind,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
        }
        flat |= {k: v for k, v in self.network_inputs().items() if k not in ("num_outputs",)}
        prep = plain(asdict(self.preprocessing))
        if isinstance(self.preprocessing, ImagePreprocessing):
            prep["input_size"] = prep.pop("size")
        if isinstance(self.preprocessing, SequencePreprocessing):
            prep["window"] = prep["window"] if self.preprocessing.mode == "window" else None
        flat |= prep
        flat |= {k: v for k, v in plain(asdict(self.stats)).items() if v}
        if self.datamodule is not None:
            flat["datamodule"] = self.datamodule
        return flat


def plain(value: Any) -> Any:
    """Tuples to lists, numpy scalars to Python: what `torch.load(weights_only=True)` and JSON accept."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_facts(facts: Mapping[str, Any]) -> DataSpec:
    """A spec from the flat `facts` dict that checkpoints held before the typed contract (contract 1)."""
    kind = facts.get("kind", "image")
    datamodule = facts.get("datamodule")
    config = datamodule or {}
    prep: Preprocessing
    if kind == "image":
        channels = int(facts.get("in_channels", facts["input_shape"][0]))
        prep = ImagePreprocessing(
            size=tuple(int(v) for v in facts.get("input_size", facts["input_shape"][1:])),
            color_mode=str(facts.get("color_mode") or {1: "grayscale", 3: "rgb", 4: "rgba"}[channels]),
            normalization=str(facts.get("normalization") or config.get("normalize") or "standard"),
            mean=tuple(float(v) for v in facts.get("mean", [0.0] * channels)),  # hand-made facts may omit them
            std=tuple(float(v) for v in facts.get("std", [1.0] * channels)),
            resize=str(facts.get("resize", "bilinear")),
            crop_pct=facts.get("crop_pct"),
        )
    elif kind == "text":
        prep = TextPreprocessing(
            vocab=tuple(facts["vocab"]),
            max_len=int(facts["max_len"]),
            padding=str(facts.get("padding", "pre")),
            truncating=str(facts.get("truncating", "pre")),
            pad_index=int(facts.get("pad_index", 0)),
            oov_index=int(facts.get("oov_index", 1)),
            tokenizer=str(facts.get("tokenizer", "")),
        )
    elif kind == "sequence":
        names = tuple(str(n) for n in facts["feature_names"])
        prep = SequencePreprocessing(
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
    else:
        raise CnnZooError(f"unknown data kind {kind!r} in the checkpoint's data facts (image, text or sequence)")
    counts = facts.get("class_counts")
    return DataSpec(
        kind=kind,
        class_names=tuple(str(n) for n in facts["class_names"]),
        input_shape=tuple(int(v) for v in facts["input_shape"]),
        input_dtype=str(facts.get("input_dtype", "float32")),
        preprocessing=prep,
        stats=DataStats(
            class_counts=tuple(counts) if counts else None,
            split_sizes=dict(facts.get("split_sizes") or {}),
            split_class_counts=dict(facts.get("split_class_counts") or {}),
        ),
        train_augmentation=bool(facts.get("train_augmentation", False)),
        datamodule=datamodule,
    )
