"""Data kinds: one class per kind of input (images, text, sequences) owning everything that differs between them.

What belongs here: a `DataKind` subclass per kind (`image.py`, `text.py`, `sequence.py`), its preprocessing
dataclass (the evaluation transform a checkpoint stores), the one reader of raw inputs that `predict` and
`explain` share, how an input and its attributions are drawn (explain, top losses), the options that apply to the
kind, its export example input and how an old checkpoint's flat facts become its preprocessing. Commands ask
`kind_named(spec.kind)` (or `spec.data_kind`) and never compare kind names.

A new kind is a subclass registered with `register_kind` in any importable module (see docs/data.md, "Add a data
kind"): the spec records that module, so every command loading its checkpoint imports it again.
"""

from cnn_zoo.data.kinds.base import (
    DataKind,
    KindOption,
    MistakeDrawing,
    RawInput,
    Sample,
    kind_named,
    known_kinds,
    register_kind,
)
from cnn_zoo.data.kinds.image import ImageKind, ImagePreprocessing
from cnn_zoo.data.kinds.sequence import SequenceKind, SequencePreprocessing
from cnn_zoo.data.kinds.text import TextKind, TextPreprocessing

__all__ = [
    "DataKind",
    "ImageKind",
    "ImagePreprocessing",
    "KindOption",
    "MistakeDrawing",
    "RawInput",
    "Sample",
    "SequenceKind",
    "SequencePreprocessing",
    "TextKind",
    "TextPreprocessing",
    "kind_named",
    "known_kinds",
    "register_kind",
]
