"""IMDB movie reviews (Maas et al. 2011) as padded integer sequences, the course's Conv1D text data.

Source, first found wins: the extracted tree `<data_dir>/aclImdb/{train,test}/{pos,neg}/*.txt`, or the archive
`<data_dir>/aclImdb_v1.tar.gz`, whose reviews are extracted once into `<cache_dir>/imdb/` (the data folder may
be read-only), or, with `download=true`, the official archive fetched into `<data_dir>`.

`val_size` reviews are held out of train with `seed`; the vocabulary counts the remaining training reviews only
(validation and test words never leak into it). The encoded tensors are cached under `<cache_dir>/imdb/`, keyed
by the source and every setting that changes them, so later runs skip reading and tokenising.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cnn_zoo.data.base import ZooDataModule, require_positive, resolve_dir
from cnn_zoo.data.download import Resource, download
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
from cnn_zoo.runtime.progress import track

log = logging.getLogger(__name__)

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
CLASS_NAMES = ["neg", "pos"]
SPLITS = ("train", "test")
REVIEW_MEMBER = re.compile(r"^aclImdb/(train|test)/(pos|neg)/[^/]+\.txt$")
ARCHIVE_MD5 = "md5:7c2ac02c03563afcf9b574c7e56c153a"  # the official archive's MD5, as published loaders check it
ENCODING_VERSION = 1  # bump when tokenisation or the cache layout changes: old caches are then ignored


class Sequences(Dataset):
    """(int64 token ids, label) pairs; stored as int32 to halve the memory of 50,000 x 500 ids."""

    def __init__(self, ids: np.ndarray, labels: np.ndarray) -> None:
        self.ids = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int32))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[index].long(), self.labels[index]


# ---------------------------------------------------------------------- archive: download and extraction
def download_archive(url: str, target: Path) -> None:
    """Fetch `url` to `target` (progress bar, `.part` file; the official archive's published MD5 checked)."""
    download(Resource(url, target.name, checksum=ARCHIVE_MD5 if url == URL else None), target.parent)


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why extracting `member` could write outside the destination (absolute, `..`, link, device), or None."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member.name):
        return "absolute path"
    if ".." in path.parts:
        return "'..' in its path"
    if member.issym() or member.islnk():
        return f"a link to {member.linkname!r}"
    if not (member.isfile() or member.isdir()):
        return "not a regular file or folder"
    return None


def extract_reviews(archive: Path, destination: Path) -> None:
    """Write the archive's `aclImdb/{train,test}/{pos,neg}/*.txt` under `destination`, and nothing else.

    Any member that could escape `destination` makes the whole archive refused: a tampered download.
    """
    root = destination.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in track(tar, f"extracting the reviews of {archive.name}", unit="members"):
                reason = unsafe_reason(member)
                if reason:
                    raise CnnZooError(
                        f"refusing to extract {archive}: member {member.name!r} is unsafe ({reason}); "
                        f"replace it with the official archive from {URL}"
                    )
                name = member.name.removeprefix("./")
                if not member.isfile() or not REVIEW_MEMBER.match(name):
                    continue
                target = (root / name).resolve()
                if not target.is_relative_to(root):  # unreachable after the checks above; kept as the last guard
                    raise CnnZooError(f"refusing to extract {archive}: {member.name!r} resolves outside {root}")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is not None:
                    target.write_bytes(source.read())
    except (tarfile.TarError, EOFError, OSError) as err:
        reason = " ".join(str(err).split())  # tarfile's messages span lines; ours is one
        raise CnnZooError(
            f"cannot read archive {archive} ({type(err).__name__}: {reason}); it may be truncated or not a .tar.gz: "
            f"delete it and download it again from {URL}"
        ) from err


def extract_once(archive: Path, cache_root: Path) -> Path:
    """The reviews of `archive` extracted under `cache_root`, once per archive version; returns the aclImdb folder.

    Extraction goes to a temporary folder renamed into place when complete, so a crash leaves no half tree.
    """
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    final = cache_root / f"extracted-{key}"
    if (final / "aclImdb").is_dir():
        return final / "aclImdb"
    cache_root.mkdir(parents=True, exist_ok=True)
    log.info("extracting the reviews of %s into %s (once)", archive, final)
    temporary = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_root))
    try:
        extract_reviews(archive, temporary)
        if not (temporary / "aclImdb").is_dir():
            raise CnnZooError(
                f"{archive} holds no aclImdb/{{train,test}}/{{pos,neg}}/*.txt reviews; "
                f"use the official archive from {URL}"
            )
        try:
            temporary.rename(final)
        except OSError:
            if not (final / "aclImdb").is_dir():  # not a concurrent extraction that finished first
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return final / "aclImdb"


# ---------------------------------------------------------------------- reading the tree
def review_files(tree: Path, split: str, label: str) -> list[Path]:
    folder = tree / split / label
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise CnnZooError(
            f"no reviews in {folder}: the IMDB tree must hold {tree}/{{train,test}}/{{pos,neg}}/<id>_<rating>.txt"
        )
    return files


def read_split(tree: Path, split: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Texts and labels (0 neg, 1 pos) of one split, in sorted file order (the first `limit` per class)."""
    texts: list[str] = []
    labels: list[int] = []
    for index, label in enumerate(CLASS_NAMES):
        files = review_files(tree, split, label)[:limit]
        reading = track(files, f"reading {split}/{label} reviews")
        texts += [path.read_text(encoding="utf-8", errors="replace") for path in reading]
        labels += [index] * len(files)
    return texts, np.asarray(labels, dtype=np.int64)


def tree_fingerprint(tree: Path) -> str:
    """Where the reviews are, how many, how big and how recent: enough to notice an edited tree."""
    parts = [str(tree.resolve())]
    for split in SPLITS:
        for label in CLASS_NAMES:
            stats = [entry.stat() for entry in os.scandir(tree / split / label) if entry.name.endswith(".txt")]
            parts.append(f"{split}/{label}:{len(stats)}:{sum(s.st_size for s in stats)}:")
            parts[-1] += str(max((s.st_mtime_ns for s in stats), default=0))
    return "|".join(parts)


# ---------------------------------------------------------------------- the datamodule
class IMDBDataModule(ZooDataModule):
    """Binary sentiment (neg=0, pos=1) of 25,000 training and 25,000 test reviews, as (max_len,) int64 ids."""

    def __init__(
        self,
        data_dir: str = "data",
        cache_dir: str = ".cache/cnn_zoo",
        folder: str = "aclImdb",
        archive: str = "aclImdb_v1.tar.gz",
        url: str = URL,
        download: bool = True,
        num_words: int = 10000,
        max_len: int = 500,
        padding: str = "pre",
        truncating: str = "pre",
        val_size: float = 5000,
        seed: int = 42,
        max_reviews: int | None = None,
        cache: bool = True,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        self.data_dir = resolve_dir(data_dir)
        self.cache_root = resolve_dir(cache_dir) / "imdb"
        self.folder = self.data_dir / folder
        self.archive = self.data_dir / archive
        self.url = url
        self.download = bool(download)
        self.num_words = require_positive("num_words", num_words)
        self.max_len = require_positive("max_len", max_len)
        check_sides(padding, truncating)
        self.padding, self.truncating = padding, truncating
        if float(val_size) < 0:
            raise CnnZooError(f"data.val_size must be a count >= 0 or a fraction < 1, got {val_size!r}")
        self.val_size = float(val_size) if float(val_size) < 1 else int(val_size)
        self.seed = int(seed)
        self.max_reviews = require_positive("max_reviews", max_reviews) if max_reviews is not None else None
        self.cache = bool(cache)
        self.tree: Path | None = None
        self.vocab: list[str] = []

    # ------------------------------------------------------------------ locating the reviews
    def prepare_data(self) -> None:
        """Find the tree, else extract the archive (downloading it first when allowed)."""
        if self.tree is not None:
            return
        if (self.folder / "train").is_dir():
            self.tree = self.folder
            return
        if not self.archive.is_file():
            self.fetch_archive()
        self.tree = extract_once(self.archive, self.cache_root)

    def fetch_archive(self) -> None:
        looked = f"looked for {self.folder}/{{train,test}}/{{pos,neg}}/ and {self.archive}"
        how = (
            f"Run `cnn-zoo-prepare imdb data_dir={self.data_dir}`, or download {self.url} "
            f"(or copy aclImdb_v1.tar.gz / the extracted aclImdb/ folder) into {self.data_dir}, "
            "or set CNN_ZOO_DATA_DIR (or data.data_dir) to the folder holding it"
        )
        if not self.download:
            raise CnnZooError(f"IMDB reviews not found: {looked}; download disabled (data.download=false). {how}")
        try:
            download_archive(self.url, self.archive)
        except Exception as err:  # URLError, HTTPError, timeouts, a read-only folder: all mean the same here
            first_line = str(err).splitlines()[0][:160] if str(err) else ""
            raise CnnZooError(
                f"IMDB reviews not found: {looked}; downloading {self.url} failed ({type(err).__name__}: "
                f"{first_line}). {how}"
            ) from err

    # ------------------------------------------------------------------ encoding
    def settings(self) -> dict[str, Any]:
        """Everything the encoded tensors depend on: the cache key."""
        return {
            "version": ENCODING_VERSION,
            "source": tree_fingerprint(self.tree) if self.tree else "",
            "num_words": self.num_words,
            "max_len": self.max_len,
            "padding": self.padding,
            "truncating": self.truncating,
            "val_size": self.val_size,
            "seed": self.seed,
            "max_reviews": self.max_reviews,
        }

    def cache_file(self) -> Path:
        key = hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:16]
        return self.cache_root / f"encoded-{key}.npz"

    def encode_all(self) -> dict[str, np.ndarray]:
        """Read, split, build the vocabulary on the training part, encode and pad every split."""
        assert self.tree is not None
        texts, labels = read_split(self.tree, "train", self.max_reviews)
        n_val = round(self.val_size * len(texts)) if isinstance(self.val_size, float) else self.val_size
        if n_val >= len(texts):
            raise CnnZooError(
                f"data.val_size={self.val_size} leaves no training reviews (the training split has {len(texts)})"
            )
        order = np.random.default_rng(self.seed).permutation(len(texts))
        val_index, train_index = np.sort(order[:n_val]), np.sort(order[n_val:])
        tokens = [tokenize(text) for text in track(texts, "tokenising IMDB training reviews", unit="reviews")]
        vocab = build_vocabulary((tokens[i] for i in train_index), self.num_words)
        ids = encode(tokens, vocab)
        test_texts, test_labels = read_split(self.tree, "test", self.max_reviews)
        test_texts = track(test_texts, "tokenising IMDB test reviews", unit="reviews")
        test_ids = encode((tokenize(text) for text in test_texts), vocab)

        def padded(sequences: list[list[int]]) -> np.ndarray:
            return pad_sequences(sequences, self.max_len, self.padding, self.truncating)

        return {
            "train_x": padded([ids[i] for i in train_index]),
            "train_y": labels[train_index],
            "val_x": padded([ids[i] for i in val_index]),
            "val_y": labels[val_index],
            "test_x": padded(test_ids),
            "test_y": test_labels,
            "vocab": np.asarray(vocab),
        }

    def load_encoded(self) -> dict[str, np.ndarray]:
        """The encoded splits from the cache, or encoded now (and cached)."""
        path = self.cache_file()
        if self.cache and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    log.info("encoded IMDB reviews from the cache %s", path)
                    return {name: stored[name] for name in stored.files}
            except Exception as err:  # a damaged cache is rebuilt, not fatal
                log.warning("ignoring the unreadable cache %s (%s)", path, err)
        encoded = self.encode_all()
        if self.cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.stem}.{os.getpid()}.npz")
            np.savez(partial, **encoded)
            partial.replace(path)
            log.info("cached the encoded reviews in %s", path)
        return encoded

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self.spec is not None:
            return
        self.prepare_data()
        encoded = self.load_encoded()
        self.vocab = [str(word) for word in encoded["vocab"]]
        self.train_set = Sequences(encoded["train_x"], encoded["train_y"])
        self.val_set = Sequences(encoded["val_x"], encoded["val_y"]) if len(encoded["val_y"]) else None
        self.test_set = Sequences(encoded["test_x"], encoded["test_y"])
        if self.val_set is None:
            log.warning("data.val_size=0: validating on the test split")
            self.val_set = self.test_set
        self.spec = text_spec(
            CLASS_NAMES,
            self.vocab,
            self.max_len,
            self.padding,
            self.truncating,
            np.bincount(encoded["train_y"], minlength=2).tolist(),
            {"train": len(self.train_set), "val": len(encoded["val_y"]), "test": len(self.test_set)},
        )

    def save_artifacts(self, run_dir: Path) -> None:
        """`vocabulary.txt`: one word a line, line n (from 0) = index n; also inside the checkpoint's spec."""
        if not self.vocab:
            self.setup("fit")
        write_vocabulary(run_dir, self.vocab)
