"""The interface a data kind implements, the values it exchanges with the commands, and the registry of kinds.

A kind says everything that differs between images, text and sequences (or a kind of your own): the network
inputs its spec offers, how a raw input a user brings becomes samples (one reader, for `predict` and `explain`),
how samples and attributions are drawn, which options apply, and its export example. The defaults treat an input
as float channels over positions (a series), so a new float kind implements little more than its reader.

Heavy libraries (torch, captum, matplotlib) are imported inside the methods: the spec, and so this module, is
imported by every command, including the ones that never draw.
"""

from __future__ import annotations

import importlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cnn_zoo.runtime.errors import CnnZooError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor, nn

    from cnn_zoo.data.spec import DataSpec
    from cnn_zoo.interpretation.attribution import Attribution
    from cnn_zoo.interpretation.index import Entry
    from cnn_zoo.interpretation.toplosses import Mistake


@dataclass
class RawInput:
    """What a user points `predict` or `explain` at (`input=`, `input_column=`) and how to read it.

    Unreadable files are collected in `unreadable` (path, reason) rather than ending the run: one bad photo in a
    folder of thousands should not cost the other predictions.
    """

    path: str | Path | None
    column: str | None = None  # text kept in a CSV: its column
    batch_size: int = 64
    num_workers: int = 0
    chunk_size: int = 256  # image files decoded at a time (bounded memory)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class Sample:
    """One input ready for the network, with where it came from (for predict's table and explain's figures)."""

    ids: dict[str, Any]  # predict's id columns for it (path, row)
    name: str  # short, file-name safe: explain names its figures after it
    source: str  # where it came from, for people (path, and rows for sequences)
    x: Tensor  # (1, ...) exactly what the network takes
    shown: Any = None  # what the kind draws it from when x is not enough (an image's uint8 pixels)
    label: int | None = None  # the true class when the input says it (a CSV's label column)


@dataclass(frozen=True)
class KindOption:
    """An option set for this run that only some kinds take (TTA views, channels_last, image augmentation,
    mixing): its key in `DataKind.accepts`, how it was written and what to do instead."""

    key: str  # tta | channels_last | augmentation | mixing
    shown: str  # e.g. "tta.views=['hflip']"
    fix: str  # e.g. "use tta=none"


@dataclass
class MistakeDrawing:
    """The test set's most confident mistakes, for the kind to draw (`TopLosses`)."""

    mistakes: list[Mistake]
    inputs: Tensor  # (N, ...) their network inputs
    labels: list[str]  # one caption each: true -> predicted, probability, loss
    class_names: list[str]
    folder: Path | None  # where files go (None: TensorBoard only)
    nrow: int
    heatmaps: Callable[[], np.ndarray | None]  # each input's Grad-CAM of its prediction, computed when asked


class DataKind(ABC):
    """One kind of data. Subclass it, set the class attributes, implement `network_inputs` and `samples`, and
    register an instance with `register_kind`; override the rest where the series defaults do not fit."""

    name: ClassVar[str]  # what DataSpec.kind holds (plain: it travels in checkpoints)
    label: ClassVar[str]  # plural, for messages: "images"
    preprocessing: ClassVar[type]  # the frozen dataclass the spec carries (plain fields: checkpoints)
    reads: ClassVar[str]  # the raw input predict and explain take, for messages
    accepts: ClassVar[frozenset[str]] = frozenset()  # the `KindOption` keys that apply to this kind

    # ------------------------------------------------------------------ the spec and the network
    @abstractmethod
    def network_inputs(self, spec: DataSpec) -> dict[str, Any]:
        """The kind's inputs a network class may declare (`data_inputs`), beyond num_outputs/num_classes/input_shape."""

    def in_channels(self, spec: DataSpec) -> int:
        """Channels of the input (its first axis); kinds without channels (token ids) say 0."""
        return int(spec.input_shape[0])

    def from_facts(self, facts: Mapping[str, Any], config: Mapping[str, Any]) -> Any:
        """The preprocessing of an old checkpoint's flat `facts` (contract 1); new kinds have no old checkpoints."""
        raise CnnZooError(f"the data kind {self.name!r} has no checkpoints of the old flat layout to read")

    def summary(self, spec: DataSpec) -> list[tuple[str, str]]:
        """(name, value) rows a run page shows about the preprocessing."""
        return []

    def follow_checkpoint(self, spec: DataSpec, config: dict[str, Any]) -> dict[str, Any]:
        """A data config `evaluate data=...` builds, with what must follow the checkpoint's preprocessing."""
        return config

    def example_input(self, spec: DataSpec, batch: int = 2, seed: int = 0) -> Tensor:
        """A batch of the spec's shape for tracing an export and checking its parity: standard normal values."""
        import torch

        return torch.randn((batch, *spec.input_shape), generator=torch.Generator().manual_seed(seed))

    # ------------------------------------------------------------------ options
    def check_options(self, options: Sequence[KindOption]) -> None:
        """One line for the first option set that does not apply to this kind (a silent no-op would mislead)."""
        for option in options:
            if option.key not in self.accepts:
                takers = " and ".join(k.label for k in known_kinds() if option.key in k.accepts) or "no data kind"
                why = f"applies to {takers} only, and this data ({self.name}) is not {takers}"
                raise CnnZooError(f"{option.shown} {why}: {option.fix}")

    # ------------------------------------------------------------------ raw inputs (predict and explain)
    @abstractmethod
    def samples(self, spec: DataSpec, source: RawInput) -> Iterator[Sample]:
        """Every sample `source` holds, preprocessed as in training: the one reader of raw inputs."""

    def explained(self, spec: DataSpec, source: RawInput, limit: int, start: int | None = None) -> list[Sample]:
        """The inputs `explain` shows: the first `limit` samples (`start` picks a window where a kind has them)."""
        return list(itertools.islice(self.samples(spec, source), limit))

    def existing(self, source: RawInput) -> Path:
        """`source.path` resolved; missing or absent is one line saying what this kind reads."""
        if not source.path:
            raise CnnZooError(f"input is required: input=<{self.reads}>")
        path = Path(str(source.path)).expanduser().resolve()
        if not path.exists():
            raise CnnZooError(f"input not found: {path}; pass input=<{self.reads}>")
        return path

    def files(self, path: Path, accept: Callable[[Path], bool], suffixes: Sequence[str]) -> list[Path]:
        """`path` itself if this kind reads it, else the files under the folder it reads (recursive, sorted)."""
        if path.is_file():
            if not accept(path):
                raise CnnZooError(
                    f"{path.name} is not what this {self.name} model reads ({', '.join(suffixes)} expected); "
                    f"pass input=<{self.reads}>"
                )
            return [path]
        found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and accept(p))
        if not found:
            listed = ", ".join(suffixes)
            raise CnnZooError(f"no {self.name} files ({listed}) under {path}; this model reads {self.reads}")
        return found

    # ------------------------------------------------------------------ showing inputs (explain, top losses)
    def series_names(self, spec: DataSpec) -> list[str]:
        """The names of the input's channels (first axis) in figures."""
        return [f"channel {i}" for i in range(self.in_channels(spec))]

    def step_names(self, spec: DataSpec) -> list[str] | None:
        """The names of the positions (last axis) when they are not time steps (e.g. columns), else None."""
        return None

    def displayable(self, spec: DataSpec, x: Tensor) -> Tensor:
        """Inputs scaled to [0, 1] for a picture of them (min-max)."""
        x = x.detach().float().cpu()
        low, high = x.amin(), x.amax()
        return (x - low) / (high - low).clamp(min=1e-8)

    def preview(self, spec: DataSpec, x: Any) -> Tensor | None:
        """A training batch as images for TensorBoard's augmentation preview, or None (nothing to show)."""
        return None

    def integrated_gradients(
        self, spec: DataSpec, model: nn.Module, x: Tensor, target: int, binary: bool, steps: int
    ) -> Attribution:
        """Integrated gradients of `target` over the float input from zeros: values shaped like x[0]."""
        from cnn_zoo.interpretation.attribution import sequence_attributions

        return sequence_attributions(model, x, target, binary, steps)

    def saliency(
        self, spec: DataSpec, model: nn.Module, x: Tensor, target: int, binary: bool, steps: int
    ) -> tuple[Attribution, str]:
        """`explain method=saliency`: the attribution and the name the figures give it."""
        return self.integrated_gradients(spec, model, x, target, binary, steps), "integrated gradients"

    def draw(self, spec: DataSpec, sample: Sample, values: np.ndarray, path: Path, title: str, label: str,
             entry: Entry) -> None:  # fmt: skip
        """Add the figure of `values` (an attribution or Grad-CAM) over `sample` to `entry`: the series plot."""
        from cnn_zoo.interpretation import render

        series = sample.x[0].detach().float().cpu().numpy()
        series = series.reshape(1, -1) if series.ndim == 1 else series.reshape(series.shape[0], -1)
        values = values.reshape(series.shape) if values.size == series.size else values
        caption, names, steps = f"{sample.name}: {title}", self.series_names(spec), self.step_names(spec)
        entry.figures.append(render.series_figure(series, values, names, path, caption, step_names=steps))

    def openings(self, spec: DataSpec, inputs: list[Tensor], words: int) -> list[str] | None:
        """The first words of each top-loss input for the table, where inputs are words; else None."""
        return None

    def draw_mistakes(self, spec: DataSpec, drawing: MistakeDrawing) -> Figure | None:
        """The top-loss figure (written to `folder/top_losses.png` too), or None: the table alone shows them."""
        from cnn_zoo.interpretation.render import series_grid

        inputs = drawing.inputs.float().numpy()
        inputs = inputs.reshape(len(inputs), inputs.shape[1] if inputs.ndim > 2 else 1, -1)
        path = drawing.folder / "top_losses.png" if drawing.folder is not None else None
        return series_grid(inputs, drawing.labels, self.series_names(spec), path,
                           "top losses: true→predicted, probability, loss", step_names=self.step_names(spec),
                           labelled_step=self.labelled_step(spec), nrow=min(drawing.nrow, 4))  # fmt: skip

    def labelled_step(self, spec: DataSpec) -> int | None:
        """The position whose label is the sample's (shaded in the top-loss plots), or None."""
        return None


_KINDS: dict[str, DataKind] = {}


def register_kind(kind: DataKind | type[DataKind]) -> Any:
    """Make `kind` known by its name (usable as a class decorator); the same class registered again is a no-op."""
    instance = kind() if isinstance(kind, type) else kind
    known = _KINDS.get(instance.name)
    if known is not None and type(known).__qualname__ != type(instance).__qualname__:
        raise CnnZooError(f"data kind {instance.name!r} is already registered by {type(known).__qualname__}")
    _KINDS[instance.name] = instance
    return kind


def known_kinds() -> list[DataKind]:
    return list(_KINDS.values())


def kind_named(name: str, module: str | None = None) -> DataKind:
    """The registered kind `name`; a kind not registered yet is imported from `module` (the spec records it)."""
    if name not in _KINDS and module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise CnnZooError(f"data kind {name!r}: its module {module!r} cannot be imported ({err})") from err
    if name not in _KINDS:
        raise CnnZooError(
            f"unknown data kind {name!r}; known kinds: {sorted(_KINDS)} "
            "(a kind of your own: a DataKind registered with cnn_zoo.data.kinds.register_kind)"
        )
    return _KINDS[name]


def module_of(kind: DataKind) -> str:
    """The module that registers `kind`: the spec records it so any process can import the kind again."""
    return type(kind).__module__
