"""The MNIST datamodule (`cnn_zoo.data.mnist`): uint8 digits normalised per batch, IDX files read as torchvision
reads them, damaged files one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnn_zoo.runtime.errors import CnnZooError


def test_mnist_keeps_uint8_digits_and_serves_the_values_of_normalising_the_whole_set(mnist_root: Path) -> None:
    from torchvision.datasets import MNIST

    from cnn_zoo.data.mnist import MNIST_MEAN, MNIST_STD, MNISTDataModule

    datamodule = MNISTDataModule(data_dir=str(mnist_root), batch_size=16, val_size=60, download=False)
    datamodule.setup("fit")
    assert datamodule.train_set.dataset.tensors[0].dtype == torch.uint8  # a quarter of float32's memory
    # what the whole set normalised at once (the earlier way) holds, bit for bit
    whole = MNIST(str(mnist_root), train=True).data.float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1)
    x, y = next(iter(datamodule.val_dataloader()))
    assert x.dtype == torch.float32 and torch.equal(x, whole[datamodule.val_set.indices[:16]])
    test_whole = MNIST(str(mnist_root), train=False).data.float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
    sample, _ = datamodule.test_set[7]
    assert torch.equal(sample, test_whole[7].unsqueeze(0))


def test_idx_files_read_as_torchvision_reads_them_plain_or_gzipped(mnist_root: Path, tmp_path: Path) -> None:
    import gzip

    from torchvision.datasets import MNIST

    from cnn_zoo.data.mnist import RAW_FILES, MNISTDataModule, read_idx

    raw = mnist_root / "MNIST" / "raw"
    reference = MNIST(str(mnist_root), train=True)
    images = read_idx(raw / "train-images-idx3-ubyte")
    assert images.dtype == torch.uint8 and torch.equal(images, reference.data)
    assert torch.equal(read_idx(raw / "train-labels-idx1-ubyte").long(), reference.targets)
    zipped = tmp_path / "MNIST" / "raw"  # only the gzipped originals, as LeCun's site serves them
    zipped.mkdir(parents=True)
    for name in RAW_FILES:
        (zipped / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
    datamodule = MNISTDataModule(data_dir=str(tmp_path), val_size=60, download=False)
    datamodule.setup("fit")
    assert torch.equal(datamodule.train_set.dataset.tensors[0].squeeze(1), reference.data)
    subset = MNISTDataModule(data_dir=str(mnist_root), val_size=0, download=False, digits=[3, 7])
    subset.setup("fit")
    labels = subset.train_set.dataset.tensors[1]
    assert set(labels.tolist()) == {0, 1}
    assert len(labels) == int(torch.isin(reference.targets, torch.tensor([3, 7])).sum())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-5], "holds other than the 784 bytes"),
        (lambda data: data + b"x", "holds other than the 784 bytes"),
        (lambda data: b"\x00\x00\x0d\x03" + data[4:], "not an IDX file of unsigned bytes (it starts 00000d03)"),
        (lambda data: data[:6], "ends inside its header"),
        (lambda data: b"", "it starts empty"),
    ],
)
def test_a_damaged_idx_file_is_one_clear_error(tmp_path: Path, damage, message: str) -> None:
    from cnn_zoo.data.mnist import MNISTDataModule
    from tests.fixtures import make_mnist

    make_mnist(tmp_path, n_train=1, n_test=1)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CnnZooError, match="cannot read MNIST IDX files in .*Replace them with the original") as err:
        MNISTDataModule(data_dir=str(tmp_path), val_size=0, download=False).setup("fit")
    assert message in str(err.value)
