"""Text: reviews tokenised, mapped to vocabulary ids and padded; attributions and Grad-CAM are per word."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cnn_zoo.data.kinds.base import DataKind, MistakeDrawing, RawInput, Sample, register_kind
from cnn_zoo.runtime.errors import CnnZooError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor, nn

    from cnn_zoo.data.spec import DataSpec
    from cnn_zoo.interpretation.attribution import Attribution
    from cnn_zoo.interpretation.index import Entry


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


@register_kind
class TextKind(DataKind):
    name = "text"
    label = "text"
    preprocessing = TextPreprocessing
    reads = "a review as a .txt file, a folder of .txt files, or a .csv with input_column=<column>"

    def network_inputs(self, spec: DataSpec) -> dict[str, Any]:
        return {"vocab_size": len(spec.preprocessing.vocab)}

    def in_channels(self, spec: DataSpec) -> int:
        return 0  # token ids have no channels

    def from_facts(self, facts: Mapping[str, Any], config: Mapping[str, Any]) -> TextPreprocessing:
        return TextPreprocessing(
            vocab=tuple(facts["vocab"]),
            max_len=int(facts["max_len"]),
            padding=str(facts.get("padding", "pre")),
            truncating=str(facts.get("truncating", "pre")),
            pad_index=int(facts.get("pad_index", 0)),
            oov_index=int(facts.get("oov_index", 1)),
            tokenizer=str(facts.get("tokenizer", "")),
        )

    def example_input(self, spec: DataSpec, batch: int = 2, seed: int = 0) -> Tensor:
        """Token ids inside the vocabulary."""
        import torch

        generator = torch.Generator().manual_seed(seed)
        return torch.randint(0, len(spec.preprocessing.vocab), (batch, *spec.input_shape), generator=generator)

    # ------------------------------------------------------------------ raw inputs
    def texts(self, source: RawInput) -> tuple[list[dict[str, Any]], list[str], list[str | Path]]:
        """(ids, names, texts) of a `.txt` file, a folder of them (recursive: their paths, read when encoded), or a
        CSV column (`input_column`)."""
        import pandas as pd

        from cnn_zoo.data.csv_table import sniff_delimiter

        path = self.existing(source)
        if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
            column = source.column or "text"
            try:
                frame = pd.read_csv(path, sep=sniff_delimiter(path), dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
                raise CnnZooError(f"cannot read {path} as CSV: {str(err).splitlines()[0]}") from err
            if column not in frame.columns:
                raise CnnZooError(
                    f"{path} has no column {column!r} (columns: {list(frame.columns)}); pass input_column=<column>"
                )
            rows = [int(i) for i in frame.index]
            return [{"row": r} for r in rows], [f"{path.stem}_row{r}" for r in rows], frame[column].tolist()
        files = self.files(path, lambda p: p.suffix.lower() == ".txt", (".txt",))
        return [{"path": str(p)} for p in files], [p.stem for p in files], list(files)

    def samples(self, spec: DataSpec, source: RawInput) -> Iterator[Sample]:
        import torch

        ids, names, texts = self.texts(source)
        size = max(1, int(source.batch_size))
        for low in range(0, len(texts), size):  # read and encoded a batch at a time
            part = [t.read_text(encoding="utf-8", errors="replace") if isinstance(t, Path) else t
                    for t in texts[low : low + size]]  # fmt: skip
            encoded = torch.from_numpy(spec.preprocessing.encode(part))
            for i, row in enumerate(encoded):
                where = ids[low + i].get("path") or f"{source.path}, row {ids[low + i]['row']}"
                yield Sample(ids[low + i], names[low + i], str(where), row.unsqueeze(0).long(), shown=part[i])

    def explained(self, spec: DataSpec, source: RawInput, limit: int, start: int | None = None) -> list[Sample]:
        from cnn_zoo.data.text import tokenize

        chosen = super().explained(spec, source, limit, start)
        for sample in chosen:
            if not tokenize(sample.shown):
                raise CnnZooError(f"{sample.source} holds no words to classify")
        return chosen

    # ------------------------------------------------------------------ showing inputs
    def words(self, spec: DataSpec, ids: Tensor) -> list[str]:
        """The vocabulary's word at each position; padding is ""."""
        vocab, pad = spec.preprocessing.vocab, spec.preprocessing.pad_index
        return ["" if i == pad else (vocab[i] if 0 <= i < len(vocab) else "?") for i in ids.flatten().tolist()]

    def integrated_gradients(
        self, spec: DataSpec, model: nn.Module, x: Tensor, target: int, binary: bool, steps: int
    ) -> Attribution:
        """Over the embedding (ids are not differentiable), from the all-padding review."""
        from cnn_zoo.interpretation.attribution import token_attributions

        return token_attributions(model, x, target, binary, spec.preprocessing.pad_index, steps)

    def draw(self, spec: DataSpec, sample: Sample, values: np.ndarray, path: Path, title: str, label: str,
             entry: Entry) -> None:  # fmt: skip
        from cnn_zoo.interpretation import render

        tokens = self.words(spec, sample.x[0])
        entry.fragments.append(render.token_html(tokens, values, f"{title} (red: for, blue: against)"))
        entry.figures.append(render.token_bars(tokens, values, path, f"{sample.name}: {title}"))

    def openings(self, spec: DataSpec, inputs: list[Tensor], words: int) -> list[str] | None:
        return [" ".join([w for w in self.words(spec, tokens) if w][:words]) for tokens in inputs]

    def draw_mistakes(self, spec: DataSpec, drawing: MistakeDrawing) -> Figure | None:
        """`top_losses.html`: each misread review's words, coloured by the Grad-CAM of the wrong prediction (the
        run page shows it); without a convolution or with `heatmaps: false`, the words uncoloured. No figure: the
        table is what TensorBoard shows."""
        from cnn_zoo.interpretation.render import token_html

        if drawing.folder is None or not spec.preprocessing.vocab:
            return None
        maps = drawing.heatmaps()
        parts = []
        names = drawing.class_names
        for rank, (m, tokens) in enumerate(zip(drawing.mistakes, drawing.inputs, strict=True), 1):
            words = self.words(spec, tokens)
            values = maps[rank - 1] if maps is not None else np.zeros(len(words))
            title = (
                f"{rank}. test sample {m.index}: {names[m.target]} read as "
                f"{names[m.predicted]} (p={m.probability:.2f}, loss={m.loss:.2f})"
            )
            parts.append(token_html(words, values, title))
        (drawing.folder / "top_losses.html").write_text("\n".join(parts) + "\n", encoding="utf-8")
        return None
