"""Batch-indexed tensor datasets (`cnn_zoo.data.batches`): one indexing per batch, the batches of the per-sample
loader."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset, random_split

from cnn_zoo.data.batches import CompactImages, TensorBatches, stacked, tensor_batches
from cnn_zoo.data.mnist import PixelScaling


def batches(loader: DataLoader) -> list[list[torch.Tensor]]:
    return [list(batch) for batch in loader]


def test_batch_indexed_loader_yields_the_batches_of_the_per_sample_loader() -> None:
    x, y = torch.randn(103, 1, 4, 4), torch.arange(103)
    train, _ = random_split(TensorDataset(x, y), [83, 20], generator=torch.Generator().manual_seed(0))
    batched = tensor_batches(train)
    assert isinstance(batched, TensorBatches) and len(batched) == 83
    torch.manual_seed(1)
    expected = batches(DataLoader(train, batch_size=16, shuffle=True))
    torch.manual_seed(1)
    got = batches(DataLoader(batched, batch_size=16, shuffle=True, collate_fn=stacked))
    assert len(got) == len(expected) == 6
    for (gx, gy), (ex, ey) in zip(got, expected, strict=True):
        assert torch.equal(gx, ex) and torch.equal(gy, ey)
    assert [len(b[1]) for b in got][-1] == 83 - 5 * 16
    assert tensor_batches(list(range(3))) is None  # other datasets keep the per-sample path


def test_datamodule_loader_serves_mnist_whole_batches(compose_cfg, mnist_root: Path) -> None:
    from cnn_zoo.training.pipeline import build_datamodule

    cfg = compose_cfg(f"paths.data_dir={mnist_root}", "data.download=false", "data.val_size=60", "data.batch_size=32")
    datamodule = build_datamodule(cfg)
    loader = datamodule.train_dataloader()
    assert isinstance(loader.dataset, TensorBatches)
    x, y = next(iter(loader))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (32,) and y.dtype == torch.int64
    assert sum(len(b[1]) for b in datamodule.val_dataloader()) == 60


def test_compact_images_serve_batches_and_samples_through_their_transform() -> None:
    pixels, labels = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8), torch.arange(40)
    dataset = CompactImages(pixels, labels, transform=PixelScaling(0.5, 0.25))
    train, _ = random_split(dataset, [30, 10], generator=torch.Generator().manual_seed(0))
    batched = tensor_batches(train)
    assert isinstance(batched, TensorBatches)
    x, y = batched.__getitems__([0, 5, 7])
    rows = torch.as_tensor(train.indices)[[0, 5, 7]]
    assert x.dtype == torch.float32 and torch.equal(y, labels[rows])
    assert torch.allclose(x, (pixels[rows].float() / 255 - 0.5) / 0.25)
    sample, label = dataset[3]
    assert sample.dtype == torch.float32 and sample.shape == (1, 4, 4) and int(label) == 3
