"""Tiny public-dataset archives in their real layouts: Microsoft's PetImages zip, Kaggle's train.zip, telemanom.

Written under tmp_path; the photos are real JPEGs (small class images), the telemetry real `.npy` arrays.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tests.fixtures import class_image


def jpeg_bytes(label: int, rng: np.random.Generator, size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(class_image(label, rng, size)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_petimages_zip(path: Path, per_class: int = 8, seed: int = 0, bad_files: bool = True) -> Path:
    """`PetImages/{Cat,Dog}/<n>.jpg` as kagglecatsanddogs_5340.zip; `bad_files` adds what the real one holds:
    a zero-byte `Cat/<per_class>.jpg`, a truncated `Dog/<per_class>.jpg` and `Cat/Thumbs.db`, `Dog/Thumbs.db`."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for label, folder in enumerate(("Cat", "Dog")):
            for number in range(per_class):
                archive.writestr(f"PetImages/{folder}/{number}.jpg", jpeg_bytes(label, rng))
            if bad_files:
                archive.writestr(f"PetImages/{folder}/Thumbs.db", b"\xd0\xcf\x11\xe0 not an image")
        if bad_files:
            archive.writestr(f"PetImages/Cat/{per_class}.jpg", b"")
            whole = jpeg_bytes(1, rng)
            archive.writestr(f"PetImages/Dog/{per_class}.jpg", whole[: len(whole) // 2])
        archive.writestr("readme[1].txt", "Microsoft Kaggle Cats and Dogs (test fixture)")
    return path


def make_kaggle_zip(path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """`train/{cat,dog}.<n>.jpg` as the Kaggle competition's train.zip."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for label, name in enumerate(("cat", "dog")):
            for number in range(per_class):
                archive.writestr(f"train/{name}.{number}.jpg", jpeg_bytes(label, rng))
    return path


# ---------------------------------------------------------------------- telemanom
def channel_arrays(n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, 6) arrays as telemanom's: col 0 the value in [-1, 1], cols 1-5 command bits.

    col 1 toggles everywhere (kept); col 2 is 0 on train but 1 on a stretch of test (dropped: constant on
    train); col 3 is constant everywhere (dropped); col 4 toggles (kept, becomes f2); col 5 toggles only on
    train's first row (kept: not constant on train, constant on test).
    """
    rng = np.random.default_rng(seed)

    def arrays(n: int, start: int) -> np.ndarray:
        t = np.arange(start, start + n)
        values = np.zeros((n, 6))
        values[:, 0] = 0.8 * np.sin(t / 7.0)
        values[:, 1] = (rng.random(n) < 0.2).astype(float)
        values[:, 3] = 1.0
        values[:, 4] = (t % 5 == 0).astype(float)
        return values

    train, test = arrays(n_train, 0), arrays(n_test, n_train)
    train[0, 5] = 1.0
    test[10:20, 2] = 1.0
    test[n_test // 2, 0] = 1.0  # above the train range: scaled past 1
    return train, test


def make_telemanom(root: Path) -> tuple[Path, Path]:
    """telemanom's `data.zip` (`data/{train,test}/<chan>.npy`) and `labeled_anomalies.csv`; returns both paths.

    Channels: SMAP `A-1` (a point [5, 9] and a contextual [30, 44] interval), SMAP `P-2` listed twice with
    different intervals (the real file's duplicate: the last row labels it), SMAP `D-12` whose every column is
    constant on train (skipped), MSL `C-1` (one contextual interval); and `X-9` in the zip but not labelled.
    """
    root.mkdir(parents=True, exist_ok=True)
    shapes = {"A-1": (80, 60), "P-2": (70, 50), "D-12": (40, 30), "C-1": (50, 45), "X-9": (30, 30)}
    archive = root / "data.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for seed, (chan, (n_train, n_test)) in enumerate(shapes.items()):
            train, test = channel_arrays(n_train, n_test, seed)
            if chan == "D-12":
                train[:] = 0.25
            for split, array in (("train", train), ("test", test)):
                buffer = io.BytesIO()
                np.save(buffer, array)
                out.writestr(f"data/{split}/{chan}.npy", buffer.getvalue())
    rows = [
        ("A-1", "SMAP", "[[5, 9], [30, 44]]", "[point, contextual]", 60),
        ("P-2", "SMAP", "[[10, 29]]", "[point]", 50),
        ("D-12", "SMAP", "[[3, 6]]", "[point]", 30),
        ("P-2", "SMAP", "[[12, 29]]", "[point]", 50),
        ("C-1", "MSL", "[[20, 24]]", "[contextual]", 45),
    ]
    labels = root / "labeled_anomalies.csv"
    pd.DataFrame(rows, columns=["chan_id", "spacecraft", "anomaly_sequences", "class", "num_values"]).to_csv(
        labels, index=False
    )
    return archive, labels
