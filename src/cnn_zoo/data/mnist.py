"""MNIST from the IDX files in `<data_dir>/MNIST/raw`, downloaded by torchvision when absent."""

from __future__ import annotations

import gzip
import logging
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import random_split
from torchvision.datasets import MNIST

from cnn_zoo.data.base import ZooDataModule, renamed, resolve_dir
from cnn_zoo.data.batches import CompactImages
from cnn_zoo.data.spec import DataSpec, DataStats, ImagePreprocessing
from cnn_zoo.runtime.errors import CnnZooError

log = logging.getLogger(__name__)

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, MNIST's images and labels


def missing_raw_files(raw_dir: Path) -> list[str]:
    """IDX files absent from `raw_dir` (the gzipped originals count: `read_idx` reads them as they are)."""
    return [name for name in RAW_FILES if not (raw_dir / name).is_file() and not (raw_dir / f"{name}.gz").is_file()]


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format: two zero bytes, type 0x08, the rank, big-endian sizes, the
    data), plain or gzipped, read straight into a uint8 tensor.

    One copy from the file, into a bytearray's plain pages: torchvision's reader copies twice (the file's bytes,
    then a bytearray of them), and memory asked for on transparent huge pages (torch's allocator here, numpy's) was
    first touched in 0.015-0.11 s for MNIST's 47 MB, against 0.03 s every time (2026-12-02, one process each).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        header = file.read(4)
        if len(header) < 4 or header[:2] != b"\0\0" or header[2] != IDX_UBYTE or not 1 <= header[3] <= 3:
            raise ValueError(f"{path.name} is not an IDX file of unsigned bytes (it starts {header.hex() or 'empty'})")
        sizes = file.read(4 * header[3])
        if len(sizes) < 4 * header[3]:
            raise ValueError(f"{path.name} ends inside its header")
        shape = struct.unpack(f">{header[3]}I", sizes)
        data = bytearray(math.prod(shape))
        count = file.readinto(data) if data else 0
        if count != len(data) or file.read(1):
            raise ValueError(f"{path.name} holds other than the {len(data)} bytes of data its header gives")
    return torch.frombuffer(data, dtype=torch.uint8).view(shape) if data else torch.empty(shape, dtype=torch.uint8)


@dataclass(frozen=True)
class PixelScaling:
    """uint8 pixels to the network's float32 input, `(x / 255 - mean) / std`, for a batch or a sample.

    Applied as batches leave memory, not once to the whole set: the digits stay uint8 (55 MB instead of 220), and
    start-up skips a pass over 70,000 images that cost 0.1-0.4 s, mostly first-touch page faults. The same
    operations in the same order as on the whole set, so the same values to the last bit.
    """

    mean: float
    std: float

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float().div_(255.0).sub_(self.mean).div_(self.std)


class MNISTDataModule(ZooDataModule):
    """The 60,000/10,000 digits, held in memory as uint8 and normalised batch by batch (fast on a CPU).

    `val_size` images are held out of the training split with `seed`; `digits` keeps a subset of
    classes (relabelled 0..k-1), which the transfer-learning benchmark uses.
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        val_size: float = 5000,
        seed: int = 42,
        normalization: str = "standard",
        download: bool = True,
        digits: list[int] | None = None,
        train_per_class: int | None = None,
        pin_memory: bool = False,
        normalize: str | None = None,  # deprecated: normalization
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        normalization = renamed("normalize", "normalization", normalize, normalization)
        if normalization not in ("standard", "rescale"):
            raise CnnZooError(f"data.normalization must be 'standard' or 'rescale', got {normalization!r}")
        if float(val_size) < 0:
            raise CnnZooError(f"data.val_size must be a count >= 0 or a fraction < 1, got {val_size!r}")
        self.data_dir = resolve_dir(data_dir)
        self.val_size = float(val_size)
        self.seed = int(seed)
        self.normalize = normalization
        self.download = download
        self.digits = sorted(int(d) for d in digits) if digits else list(range(10))
        self.train_per_class = train_per_class

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def prepare_data(self) -> None:
        missing = missing_raw_files(self.raw_dir)
        if not missing:
            return
        tried = "download disabled (data.download=false)"
        if self.download:
            try:
                MNIST(str(self.data_dir), train=True, download=True)
                MNIST(str(self.data_dir), train=False, download=True)
                return
            except Exception as err:  # network errors come in many types; all mean the same here
                tried = f"torchvision download failed ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        raise CnnZooError(
            f"MNIST not found: {self.raw_dir} lacks {', '.join(missing)}; {tried}. "
            f"Run `cnn-zoo-prepare mnist data_dir={self.data_dir}`, put the four IDX files there, "
            "or set CNN_ZOO_DATA_DIR (or data.data_dir) to a folder holding MNIST/raw/"
        )

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        self.prepare_data()
        train_x, train_y = self.load_split(train=True)
        test_x, test_y = self.load_split(train=False)
        mean, std = (MNIST_MEAN, MNIST_STD) if self.normalize == "standard" else (0.0, 1.0)
        scaling = PixelScaling(mean, std)
        if self.train_per_class:
            train_x, train_y = self.per_class_subset(train_x, train_y, int(self.train_per_class))
        train = CompactImages(train_x, train_y, transform=scaling)
        wanted = round(self.val_size * len(train)) if self.val_size < 1 else int(self.val_size)
        n_val = min(wanted, len(train) // 5)
        generator = torch.Generator().manual_seed(self.seed)
        self.train_set, self.val_set = random_split(train, [len(train) - n_val, n_val], generator=generator)
        self.test_set = CompactImages(test_x, test_y, transform=scaling)
        # tensors are prepared here; the preprocessing says how a 28x28 digit image file becomes the same tensor
        self.spec = DataSpec(
            kind="image",
            class_names=tuple(str(d) for d in self.digits),
            input_shape=(1, 28, 28),
            input_dtype="float32",
            preprocessing=ImagePreprocessing(
                size=(28, 28), color_mode="grayscale", normalization=self.normalize, mean=(mean,), std=(std,)
            ),
            stats=DataStats(split_sizes={"train": len(self.train_set), "val": n_val, "test": len(self.test_set)}),
        )

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's images as uint8 (N, 1, 28, 28) and its labels (relabelled to the kept digits)."""
        prefix = "train" if train else "t10k"
        try:
            images = read_idx(self.raw_file(f"{prefix}-images-idx3-ubyte"))
            labels = read_idx(self.raw_file(f"{prefix}-labels-idx1-ubyte")).long()
            if images.shape[1:] != (28, 28) or labels.dim() != 1 or len(labels) != len(images):
                raise ValueError(f"{len(labels)} labels for images of shape {tuple(images.shape)}")
        except (OSError, EOFError, ValueError) as err:
            raise CnnZooError(
                f"cannot read MNIST IDX files in {self.raw_dir}: {err}. Replace them with the original files"
            ) from err
        if self.digits != list(range(10)):  # a subset of the classes: keep and relabel those digits only
            keep = torch.isin(labels, torch.tensor(self.digits))
            images, labels = images[keep], torch.searchsorted(torch.tensor(self.digits), labels[keep])
        return images.unsqueeze(1), labels

    def raw_file(self, name: str) -> Path:
        """The IDX file, or its gzipped original where only that is there."""
        path = self.raw_dir / name
        return path if path.is_file() or not path.with_name(f"{name}.gz").is_file() else path.with_name(f"{name}.gz")

    def per_class_subset(self, x: torch.Tensor, y: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `per_class` images of each class after a seeded shuffle: few-label experiments."""
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        chosen = torch.cat([order[y[order] == c][:per_class] for c in range(len(self.digits))])
        return x[chosen], y[chosen]
