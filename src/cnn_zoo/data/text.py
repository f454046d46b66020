"""Text to integer sequences: tokenisation, a frequency vocabulary and Keras' `pad_sequences`.

Kept apart from the IMDB datamodule so a checkpoint's facts (vocabulary, max_len, padding) are enough to
encode new text the way the network was trained.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnn_zoo.data.spec import DataSpec, DataStats, TextPreprocessing
from cnn_zoo.runtime.errors import CnnZooError

PAD, OOV = "<pad>", "<oov>"
PAD_INDEX, OOV_INDEX = 0, 1
SIDES = ("pre", "post")

LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
# a word: letters/digits (any script), with inner apostrophes kept ("don't"); every other character separates
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")

# what `tokenize` does, recorded in the facts so a checkpoint says how its text was prepared
TOKENIZER = "lower case; <br /> removed; punctuation removed (inner apostrophes kept)"


def tokenize(text: str) -> list[str]:
    """Lower case, HTML line breaks and punctuation removed: `"Great!<br />Don't."` -> `['great', "don't"]`."""
    return WORD.findall(LINE_BREAK.sub(" ", text.lower()))


def build_vocabulary(token_lists: Iterable[Sequence[str]], num_words: int) -> list[str]:
    """Index -> word: `<pad>`, `<oov>`, then the `num_words - 2` most frequent words (ties alphabetical).

    As Keras' `num_words`, the whole index space (padding and out-of-vocabulary included) has `num_words`
    entries, so `Embedding(num_words, ...)` covers it.
    """
    if int(num_words) < 3:
        raise CnnZooError(f"data.num_words must be at least 3 (padding, out-of-vocabulary, one word), got {num_words}")
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: int(num_words) - 2]
    return [PAD, OOV, *(word for word, _ in ranked)]


def encode(token_lists: Iterable[Sequence[str]], vocabulary: Sequence[str]) -> list[list[int]]:
    index = {word: i for i, word in enumerate(vocabulary) if i > OOV_INDEX}
    return [[index.get(token, OOV_INDEX) for token in tokens] for tokens in token_lists]


def check_sides(padding: str, truncating: str) -> None:
    for name, side in (("padding", padding), ("truncating", truncating)):
        if side not in SIDES:
            raise CnnZooError(f"data.{name} must be 'pre' or 'post' (as Keras' pad_sequences), got {side!r}")


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    max_len: int,
    padding: str = "pre",
    truncating: str = "pre",
    dtype: Any = np.int32,
) -> np.ndarray:
    """Keras' `pad_sequences` with value 0: `truncating='pre'` drops the beginning of long sequences (keeps the
    last `max_len`), `'post'` the end; `padding='pre'` puts the zeros before short sequences, `'post'` after."""
    check_sides(padding, truncating)
    out = np.full((len(sequences), int(max_len)), PAD_INDEX, dtype=dtype)
    for row, sequence in enumerate(sequences):
        kept = sequence[-max_len:] if truncating == "pre" else sequence[:max_len]
        if not len(kept):
            continue
        if padding == "pre":
            out[row, -len(kept) :] = kept
        else:
            out[row, : len(kept)] = kept
    return out


def encode_texts(texts: Sequence[str], facts: dict[str, Any]) -> np.ndarray:
    """New text as a checkpoint's network expects it, from a flat facts dict (vocabulary, max_len, padding).

    `TextPreprocessing.encode` is the same, from the typed spec."""
    ids = encode([tokenize(text) for text in texts], facts["vocab"])
    return pad_sequences(ids, int(facts["max_len"]), facts["padding"], facts["truncating"], dtype=np.int64)


def text_spec(
    class_names: Sequence[str],
    vocab: Sequence[str],
    max_len: int,
    padding: str,
    truncating: str,
    class_counts: Sequence[int],
    split_sizes: dict[str, int],
) -> DataSpec:
    """The `DataSpec` of padded word-id documents: what every text datamodule publishes (IMDB, a text CSV)."""
    return DataSpec(
        kind="text",
        class_names=tuple(class_names),
        input_shape=(int(max_len),),
        input_dtype="int64",
        preprocessing=TextPreprocessing(
            vocab=tuple(vocab),
            max_len=int(max_len),
            padding=padding,
            truncating=truncating,
            pad_index=PAD_INDEX,
            oov_index=OOV_INDEX,
            tokenizer=TOKENIZER,
        ),
        stats=DataStats(class_counts=tuple(int(c) for c in class_counts), split_sizes=dict(split_sizes)),
    )


def write_vocabulary(run_dir: Path, vocab: Sequence[str]) -> None:
    """`<run>/vocabulary.txt`: one word a line, line n (from 0) = index n (also inside the checkpoint's spec)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "vocabulary.txt").write_text("".join(f"{word}\n" for word in vocab), encoding="utf-8")
