"""MNIST from the IDX files in `<data_dir>/MNIST/raw`, downloaded by torchvision when absent."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import TensorDataset, random_split
from torchvision.datasets import MNIST

from cnn_zoo.data.base import ZooDataModule, renamed, resolve_dir
from cnn_zoo.data.spec import DataSpec, DataStats, ImagePreprocessing
from cnn_zoo.errors import CnnZooError

log = logging.getLogger(__name__)

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def missing_raw_files(raw_dir: Path) -> list[str]:
    """IDX files absent from `raw_dir` (the gzipped originals count: torchvision unpacks them)."""
    return [name for name in RAW_FILES if not (raw_dir / name).is_file() and not (raw_dir / f"{name}.gz").is_file()]


class MNISTDataModule(ZooDataModule):
    """The 60,000/10,000 digits, held in memory as normalised tensors (fast on a CPU).

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
        train = TensorDataset(train_x, train_y)
        if self.train_per_class:
            train = TensorDataset(*self.per_class_subset(train_x, train_y, int(self.train_per_class)))
        wanted = round(self.val_size * len(train)) if self.val_size < 1 else int(self.val_size)
        n_val = min(wanted, len(train) // 5)
        generator = torch.Generator().manual_seed(self.seed)
        self.train_set, self.val_set = random_split(train, [len(train) - n_val, n_val], generator=generator)
        self.test_set = TensorDataset(test_x, test_y)
        mean, std = (MNIST_MEAN, MNIST_STD) if self.normalize == "standard" else (0.0, 1.0)
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
        try:
            dataset = MNIST(str(self.data_dir), train=train, download=False)
        except Exception as err:
            raise CnnZooError(
                f"cannot read MNIST IDX files in {self.raw_dir}: {err}. Replace them with the original files"
            ) from err
        images, labels = dataset.data, dataset.targets
        keep = torch.isin(labels, torch.tensor(self.digits))
        images, labels = images[keep], labels[keep]
        labels = torch.searchsorted(torch.tensor(self.digits), labels)
        mean, std = (MNIST_MEAN, MNIST_STD) if self.normalize == "standard" else (0.0, 1.0)
        x = images.float().div_(255.0).sub_(mean).div_(std).unsqueeze(1)
        return x, labels

    def per_class_subset(self, x: torch.Tensor, y: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `per_class` images of each class after a seeded shuffle: few-label experiments."""
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        chosen = torch.cat([order[y[order] == c][:per_class] for c in range(len(self.digits))])
        return x[chosen], y[chosen]
