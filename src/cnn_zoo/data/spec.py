"""The data contract: what a datamodule tells the rest of the project after `setup()`.

`DataSpec` (frozen, typed) holds three things, kept apart:
- what shapes the network: kind, input shape/dtype, classes, and the per-kind inputs (`network_inputs()`);
- `preprocessing`: one object per kind (its dataclass lives with the kind in `cnn_zoo.data.kinds`) that owns the
  evaluation transform from a raw input (an image file, a text, CSV rows) to a tensor, the one `evaluate`,
  `predict`, `export` and TensorBoard use;
- `stats`: class counts and split sizes (for class weights and reports; never for the network's shape).

It travels inside checkpoints as plain values (`to_dict`/`from_dict`, `torch.load(weights_only=True)`), and
`from_dict` also reads the flat `facts` dicts of checkpoints written before this contract existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from cnn_zoo.data.kinds import (
    DataKind,
    ImagePreprocessing,
    SequencePreprocessing,
    TextPreprocessing,
    kind_named,
)
from cnn_zoo.data.kinds.base import module_of
from cnn_zoo.runtime.errors import CnnZooError

__all__ = ["DataSpec", "DataStats", "ImagePreprocessing", "SequencePreprocessing", "TextPreprocessing", "from_facts"]

Kind = str  # a registered kind's name (`cnn_zoo.data.kinds`): image, text, sequence or one of your own
CONTRACT_VERSION = 2  # 1 = the flat `facts` dict of earlier checkpoints


def num_outputs_for(num_classes: int) -> int:
    """Two classes are one logit (binary cross-entropy), as in the course; more get one logit each."""
    return 1 if num_classes == 2 else num_classes


Preprocessing = Any  # the kind's preprocessing dataclass (`DataKind.preprocessing`): ImagePreprocessing, ...


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
        if not isinstance(self.preprocessing, self.data_kind.preprocessing):
            raise ValueError(f"a {self.kind} spec needs {self.kind} preprocessing, got {type(self.preprocessing)}")

    @property
    def data_kind(self) -> DataKind:
        """The class that owns what differs between kinds (`cnn_zoo.data.kinds`): every command asks it."""
        return kind_named(self.kind)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """The network's outputs (`num_outputs_for`)."""
        return num_outputs_for(self.num_classes)

    @property
    def in_channels(self) -> int:
        """The input's channels (image channels, sequence features or 1 in row mode); token ids have none (0)."""
        return self.data_kind.in_channels(self)

    def network_inputs(self) -> dict[str, Any]:
        """Every input a network class may declare (`data_inputs`), by name; only those declared are passed."""
        common = {"num_outputs": self.num_outputs, "num_classes": self.num_classes}
        return common | {"input_shape": list(self.input_shape)} | self.data_kind.network_inputs(self)

    def with_datamodule(self, config: dict[str, Any]) -> DataSpec:
        from dataclasses import replace

        return replace(self, datamodule=config)

    # ------------------------------------------------------------------ plain values (checkpoints, JSON)
    def to_dict(self) -> dict[str, Any]:
        """Plain values; the keys `kind`, `class_names`, `num_classes`, `input_shape`, `input_dtype` at the top."""
        return {
            "contract": CONTRACT_VERSION,
            "kind": self.kind,
            "kind_module": module_of(self.data_kind),
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
        kind = str(data["kind"])
        prep_cls = kind_named(kind, data.get("kind_module")).preprocessing
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

    def class_index(self, target: str | int) -> int:
        """A class given by name or index; a wrong one names the valid choices."""
        text = str(target)
        if text in self.class_names:
            return self.class_names.index(text)
        if text.lstrip("-").isdigit() and 0 <= int(text) < self.num_classes:
            return int(text)
        choices = list(self.class_names)
        raise CnnZooError(f"target={target!r} is not a class of this checkpoint; choose one of {choices}")


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
    prep = kind_named(str(kind)).from_facts(facts, config)
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
