"""Tiny sequence datasets in the real on-disk formats: IMDB reviews (folders, archive) and telemetry CSVs."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

POSITIVE = ["great", "wonderful", "superb", "loved", "brilliant"]
NEGATIVE = ["awful", "boring", "terrible", "hated", "dreadful"]
FILLER = ["the", "movie", "film", "a", "plot", "actor", "scene", "and", "it", "was", "story", "of"]


def review_text(label: str, index: int, split: str, rng: np.random.Generator) -> str:
    """Filler words, sentiment words of the class, a `<br />`, punctuation and a word unique to this review."""
    cue = POSITIVE if label == "pos" else NEGATIVE
    words = list(rng.choice(FILLER, size=int(rng.integers(8, 30))))
    for _ in range(3):
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cue)))
    words.append(f"uniq{split}{label}{index}")
    half = len(words) // 2
    return " ".join(words[:half]).capitalize() + "!<br /><br />" + " ".join(words[half:]) + "... (really)."


def make_imdb_tree(root: Path, per_class: int = 40, test_per_class: int = 20, seed: int = 0) -> Path:
    """`<root>/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt` as the official archive; returns `root`."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label in ("neg", "pos"):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                rating = int(rng.integers(7, 11)) if label == "pos" else int(rng.integers(1, 5))
                (folder / f"{index}_{rating}.txt").write_text(review_text(label, index, split, rng), encoding="utf-8")
    return root


def make_imdb_archive(root: Path, per_class: int = 40, test_per_class: int = 20, seed: int = 0) -> Path:
    """`<root>/aclImdb_v1.tar.gz` holding the generated tree (plus a README, as the real one), and no tree beside it."""
    staging = root / ".staging"
    make_imdb_tree(staging, per_class, test_per_class, seed)
    (staging / "aclImdb" / "README").write_text("Large Movie Review Dataset (generated for tests)\n")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "aclImdb", arcname="aclImdb")
    shutil.rmtree(staging)
    return archive


def make_unsafe_archive(path: Path, kind: str = "traversal") -> Path:
    """A tar.gz with one normal review and one member that would escape: `traversal` (../), `absolute`, `symlink`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, text: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))

        add("aclImdb/train/pos/0_9.txt", b"great")
        if kind == "traversal":
            add("aclImdb/train/pos/../../../../escaped.txt", b"owned")
        elif kind == "absolute":
            add("/tmp/cnn_zoo_escaped.txt", b"owned")
        else:
            link = tarfile.TarInfo("aclImdb/train/neg/link.txt")
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            tar.addfile(link)
    return path


# ---------------------------------------------------------------------- telemetry
def telemetry_frame(
    n_rows: int, n_features: int = 4, anomalies: tuple[tuple[int, int, int], ...] = (), seed: int = 0
) -> pd.DataFrame:
    """Columns f0..f{n-1} and `label`: f0 a noisy sine (the telemetry value), the rest on/off command bits.

    Anomaly intervals (start, stop, class): class 1 (point) pushes f0 far up; class 2 (contextual) freezes f0
    at its mean, an ordinary value that only its flat history betrays.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)
    data = {"f0": np.sin(t / 6.0) + 0.05 * rng.standard_normal(n_rows)}
    for index in range(1, n_features):
        data[f"f{index}"] = (rng.random(n_rows) < 0.1).astype(float)
    labels = np.zeros(n_rows, dtype=int)
    for start, stop, label in anomalies:
        labels[start:stop] = label
        data["f0"][start:stop] = 3.0 + rng.standard_normal(stop - start) if label == 1 else 0.0
    frame = pd.DataFrame(data)
    frame["label"] = labels
    return frame


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def make_channel(root: Path, name: str = "C-1", n_train: int = 300, n_test: int = 1200, seed: int = 0) -> Path:
    """A telemanom-style channel: `<name>_train.csv` all nominal, `<name>_test.csv` with point and contextual
    anomalies (48 rows every 120, alternating, so a stratified split finds both in every part); returns the folder."""
    write_csv(root / f"{name}_train.csv", telemetry_frame(n_train, seed=seed))
    anomalies = tuple((start, start + 48, 1 + (index % 2)) for index, start in enumerate(range(60, n_test - 60, 120)))
    write_csv(root / f"{name}_test.csv", telemetry_frame(n_test, anomalies=anomalies, seed=seed + 1))
    return root


def write_sensor_csv(path: Path, frame: pd.DataFrame, class_names: list[str], sep: str = ";") -> Path:
    """A header-less sensor file: a timestamp column first, text labels last, `sep`-separated."""
    sensor = frame.copy()
    sensor.insert(0, "time", pd.date_range("2026-01-01", periods=len(frame), freq="s").strftime("%Y-%m-%dT%H:%M:%S"))
    sensor["label"] = [class_names[int(v)] for v in sensor["label"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    sensor.to_csv(path, sep=sep, header=False, index=False)
    return path
