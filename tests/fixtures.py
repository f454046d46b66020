"""Tiny datasets written under tmp_path, in the exact on-disk formats the real data uses."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as LeCun's MNIST ships them: magic (type 0x08 = ubyte, ndim), sizes, raw bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def digit_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28x28 noise with a bright 6x6 block whose position encodes the label: learnable in a few steps."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[index, 4 + row * 12 : 10 + row * 12, 2 + col * 5 : 8 + col * 5] = 255
    return images


def make_mnist(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """`<root>/MNIST/raw/` with the four IDX files; returns `root` (the data_dir)."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", digit_images(labels, rng))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return root


def class_image(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """An RGB image whose class is visible: class 0 bright in the top half, class 1 in the bottom half (plus noise).

    The class survives a horizontal flip, as a cat stays a cat in a mirror.
    """
    image = rng.integers(0, 70, size=(size, size, 3), dtype=np.uint8)
    half = size // 2
    image[half * label : half * (label + 1)] += 150
    return image


def write_class_images(folder: Path, label: int, count: int, rng: np.random.Generator, start: int = 0) -> list[Path]:
    """`count` images in `folder`, alternating JPEG and PNG."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(start, start + count):
        suffix = ".jpg" if index % 2 == 0 else ".png"
        path = folder / f"img_{index:04d}{suffix}"
        Image.fromarray(class_image(label, rng)).save(path)
        paths.append(path)
    return paths


def make_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cats", "dogs"),
    per_class: int = 24,
    layout: str = "split",
    seed: int = 0,
    odd_files: bool = True,
) -> Path:
    """A folder-per-class image tree under `root`, as Keras' flow_from_directory reads it; returns `root`.

    layout `split`: root/<class>/*; layout `folders`: root/{train,validation,test}/<class>/* with
    per_class, per_class/2, per_class/2 images. `odd_files` adds, in the first class of the training
    folder: a corrupt JPEG (`corrupt.jpg`), a grayscale PNG, an RGBA PNG, a palette GIF, a CMYK JPEG and a
    non-image `notes.txt`.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    splits = (
        {"": per_class}
        if layout == "split"
        else {"train": per_class, "validation": per_class // 2, "test": per_class // 2}
    )
    for split, count in splits.items():
        for label, name in enumerate(classes):
            write_class_images(root / split / name, label, count, rng, start=0)
    if odd_files:
        first = root / ("" if layout == "split" else "train") / classes[0]
        (first / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
        base = class_image(0, rng)
        Image.fromarray(base[:, :, 0]).save(first / "gray.png")
        Image.fromarray(np.dstack([base, np.full(base.shape[:2], 200, np.uint8)])).save(first / "rgba.png")
        Image.fromarray(base).convert("P").save(first / "palette.gif")
        Image.fromarray(base).convert("CMYK").save(first / "cmyk.jpg")
        (first / "notes.txt").write_text("not an image")
    return root


def make_digit_folder(root: Path, per_class: int = 12, digits: int = 3, seed: int = 0) -> Path:
    """Grayscale 28x28 PNG digits as `root/{train,validation,test}/<digit>/*.png` (the generated MNIST look)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("validation", per_class // 2), ("test", per_class // 2)):
        labels = np.repeat(np.arange(digits), count)
        for index, (label, image) in enumerate(zip(labels, digit_images(labels, rng), strict=True)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(folder / f"{index:04d}.png")
    return root
