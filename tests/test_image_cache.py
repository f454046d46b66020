"""The decoded-image cache on disk: reuse across runs, invalidation, atomic writes, ranks sharing it, a full disk;
decode failures mid-run (`data.cache=none`); augmentation on the batch's device."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import cnn_zoo.data.transforms as transforms_module
from cnn_zoo.data.batches import FinishingLoader
from cnn_zoo.data.decoded_cache import MappedImages
from cnn_zoo.data.device_augment import DeviceAugmentation
from cnn_zoo.data.image_folder import (
    FileSamples,
    ImageFolderDataModule,
    class_folders,
    image_files,
    list_samples,
    split_samples,
)
from cnn_zoo.data.transforms import augmentation_transforms, decode_image
from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.runtime.errors import CnnZooError
from tests.fixtures import make_image_folder
from tests.fixtures_image_cache import write_truncatable_jpeg
from tests.test_resume import assert_same_run, cli, kill_and_resume, pets_run

ROOT = Path(__file__).resolve().parents[1]


def augmentation(name: str, **extra) -> dict:
    return {**to_plain(OmegaConf.load(ROOT / "conf" / "augmentation" / f"{name}.yaml")), **extra}


def datamodule(root: Path, cache_dir: Path, **kwargs) -> ImageFolderDataModule:
    settings = {"data_dir": str(root.parent), "folder": root.name, "image_size": 16, "num_workers": 0, "cache": "disk"}
    dm = ImageFolderDataModule(**{**settings, "cache_dir": str(cache_dir), **kwargs})
    dm.setup("fit")
    return dm


def counting_decoder(seen: list[str]):
    def counting(path, *args, **kwargs):
        seen.append(str(path))
        return decode_image(path, *args, **kwargs)

    return counting


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The paths decoded (`decode_image` calls), in this process."""
    seen: list[str] = []
    monkeypatch.setattr(transforms_module, "decode_image", counting_decoder(seen))
    return seen


def cache_files(cache_dir: Path, suffix: str) -> list[Path]:
    return sorted((cache_dir / "decoded_images").glob(f"*{suffix}"))


def test_second_run_maps_the_cache_and_decodes_nothing(tmp_path: Path, decodes: list[str], caplog) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=6)
    files = [p for p in root.rglob("*") if p.suffix in (".jpg", ".png", ".gif")]
    first = datamodule(root, tmp_path / "cache")
    assert first.cache_mode == "disk" and sorted(decodes) == sorted(map(str, files))  # every file once, corrupt too
    assert len(cache_files(tmp_path / "cache", ".u8")) == 3  # train, val, test
    decodes.clear()
    with caplog.at_level(logging.INFO):
        second = datamodule(root, tmp_path / "cache")
    assert decodes == []
    assert sum("mapped from the decoded cache" in r.getMessage() for r in caplog.records) == 3
    assert [p for p, _ in second.skipped] == [root / "train" / "cats" / "corrupt.jpg"]  # still reported
    memory = ImageFolderDataModule(data_dir=str(root.parent), folder="pets", image_size=16, num_workers=0,
                                   cache="memory")  # fmt: skip
    memory.setup("fit")
    for name in ("train", "val", "test"):
        disk_set, memory_set = second.datasets[name], memory.datasets[name]
        assert disk_set.samples == memory_set.samples
        for index in range(len(disk_set)):
            assert np.array_equal(disk_set.cache[index], memory_set.cache[index])
            assert torch.equal(disk_set[index][0], memory_set[index][0])


def test_changed_added_and_removed_files_rebuild_the_cache_decoding_only_them(tmp_path: Path, decodes) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=6, odd_files=False)
    datamodule(root, tmp_path / "cache")
    changed = root / "train" / "dogs" / "img_0002.jpg"
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
    added = root / "train" / "dogs" / "img_0100.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(added)
    (root / "train" / "cats" / "img_0001.png").unlink()
    decodes.clear()
    dm = datamodule(root, tmp_path / "cache")
    assert sorted(decodes) == sorted([str(changed), str(added)])  # the 11 unchanged rows are copied
    assert len(cache_files(tmp_path / "cache", ".u8")) == 3  # the old train cache was replaced, not kept
    paths = [p for p, _ in dm.train_set.samples]
    assert len(paths) == 12 and root / "train" / "cats" / "img_0001.png" not in paths
    assert (dm.train_set.cache[paths.index(changed)] == 7).all()
    assert (dm.train_set.cache[paths.index(added)] == 200).all()
    reference = ImageFolderDataModule(data_dir=str(tmp_path), folder="pets", image_size=16, num_workers=0,
                                      cache="memory")  # fmt: skip
    reference.setup("fit")
    assert all(np.array_equal(dm.train_set.cache[i], reference.train_set.cache[i]) for i in range(12))
    decodes.clear()
    datamodule(root, tmp_path / "cache", image_size=20)  # other decode settings: another cache, all decoded
    assert len(decodes) == 12 + 6 + 6


def test_an_interrupted_cache_write_is_never_used(tmp_path: Path, monkeypatch, decodes) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=6, odd_files=False)

    def interrupted(path, *args, **kwargs):
        if len(decodes) == 5:
            raise KeyboardInterrupt  # as Ctrl-C (or a kill) in the middle of the first split's decode
        decodes.append(str(path))
        return decode_image(path, *args, **kwargs)

    monkeypatch.setattr(transforms_module, "decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        datamodule(root, tmp_path / "cache")
    assert cache_files(tmp_path / "cache", ".u8") == [] and cache_files(tmp_path / "cache", ".json") == []
    assert list((tmp_path / "cache" / "decoded_images").glob("*.tmp-*")) == []
    monkeypatch.setattr(transforms_module, "decode_image", counting_decoder(decodes))
    whole = datamodule(root, tmp_path / "cache")
    # a writer killed outright leaves its temporary file, and a data file cut short beside its manifest
    data = next((tmp_path / "cache" / "decoded_images").glob("train-*.u8"))
    data.with_name(data.name + ".tmp-999999").write_bytes(b"\0" * 100)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    decodes.clear()
    again = datamodule(root, tmp_path / "cache")
    assert len(decodes) == 12  # train decoded again (val, test mapped), nothing read from the cut file
    assert list((tmp_path / "cache" / "decoded_images").glob("*.tmp-*")) == []
    for split in ("train", "val", "test"):
        a, b = whole.datasets[split], again.datasets[split]
        assert all(np.array_equal(a.cache[i], b.cache[i]) for i in range(len(a)))


def build_in_a_process(root: str, cache_dir: str, barrier, results) -> None:
    """One 'rank': set up the datamodule on the shared cache, report its decode count and cache files."""
    seen: list[str] = []

    def slow(path, *args, **kwargs):
        seen.append(str(path))
        time.sleep(0.02)  # the other process arrives while this one decodes
        return decode_image(path, *args, **kwargs)

    transforms_module.decode_image = slow
    barrier.wait()
    dm = datamodule(Path(root), Path(cache_dir))
    results.put((os.getpid(), len(seen), str(dm.train_set.cache.path), int(dm.train_set.cache[3].sum())))


def test_two_processes_decode_the_cache_once_and_map_the_same_file(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=6, odd_files=False)
    context = multiprocessing.get_context("fork")  # two ranks starting together, as DDP's or a sweep's
    barrier, results = context.Barrier(2), context.Queue()
    ranks = [context.Process(target=build_in_a_process, args=(str(root), str(tmp_path / "c"), barrier, results))
             for _ in range(2)]  # fmt: skip
    for rank in ranks:
        rank.start()
    reports = [results.get(timeout=120) for _ in ranks]
    for rank in ranks:
        rank.join(timeout=60)
        assert rank.exitcode == 0
    # each split decoded by one process while the other waited on its lock, then mapped it: every file once
    assert sum(count for _, count, _, _ in reports) == 24
    assert len({path for _, _, path, _ in reports}) == 1 and len({s for _, _, _, s in reports}) == 1


def test_a_full_disk_falls_back_to_decoding_on_the_fly_with_one_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=6, odd_files=False)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with caplog.at_level(logging.WARNING):
        dm = datamodule(root, tmp_path / "cache")
    warnings = [r.getMessage() for r in caplog.records if "no room for the decoded-image cache" in r.getMessage()]
    assert len(warnings) == 1 and "decoding on the fly" in warnings[0]
    assert dm.cache_mode == "none" and dm.train_set.cache is None
    assert cache_files(tmp_path / "cache", ".u8") == [] and cache_files(tmp_path / "cache", ".json") == []
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (12, 3, 16, 16) and len(y) == 12


def test_auto_caches_in_memory_below_the_threshold_and_on_disk_above(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "pets", layout="folders", per_class=4, odd_files=False)
    small = ImageFolderDataModule(data_dir=str(tmp_path), folder="pets", image_size=16, num_workers=0,
                                  cache_dir=str(tmp_path / "c"))  # fmt: skip
    small.setup("fit")
    assert small.cache_mode == "memory" and isinstance(small.train_set.cache, np.ndarray)
    large = ImageFolderDataModule(data_dir=str(tmp_path), folder="pets", image_size=16, num_workers=0,
                                  cache_dir=str(tmp_path / "c"), memory_cache_gb=0)  # fmt: skip
    large.setup("fit")
    assert large.cache_mode == "disk" and not isinstance(large.train_set.cache, np.ndarray)
    with pytest.raises(CnnZooError, match=r"data.cache must be one of \['auto', 'memory', 'disk', 'none'\]"):
        ImageFolderDataModule(data_dir=str(tmp_path), cache="ram")


# ---------------------------------------------------------------------- listing and whole-batch reads
def test_listing_keeps_pathlib_order_and_files_samples_behave_as_pairs(tmp_path: Path) -> None:
    root = tmp_path / "pets" / "cats"
    for relative in ("a-b/x.jpg", "a/x.jpg", "a/b/y.png", "a b.jpg", "a.jpg", "Z.JPG", ".hidden.jpg", "notes.txt"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"")
    expected = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".png")
                      and not p.name.startswith("."))  # fmt: skip
    assert image_files(root) == expected  # component by component ("a/..." before "a-b/..."), not by string
    samples = list_samples(root.parent, ["cats"])
    assert isinstance(samples, FileSamples) and list(samples) == [(path, 0) for path in expected]
    assert samples == [(path, 0) for path in expected] and samples[1] == (expected[1], 0)
    assert samples[1:3] == FileSamples([str(p) for p in expected[1:3]], [0, 0]) and len(samples.take([4, 0])) == 2
    assert class_folders(root.parent) == ["cats"] and class_folders(tmp_path / "nowhere") == []


def test_split_samples_draws_the_same_splits_as_the_list_of_pairs_did(tmp_path: Path) -> None:
    pairs = [(Path(f"/d/{label}/{i}.jpg"), label) for label in (0, 1, 2) for i in range(7 + 3 * label)]

    def reference(samples, fractions, seed):  # the earlier list-based code, kept here as the specification
        rng = np.random.default_rng(seed)
        parts = [[] for _ in range(len(fractions) + 1)]
        for label in sorted({label for _, label in samples}):
            members = [s for s in samples if s[1] == label]
            order = rng.permutation(len(members))
            counts = [round(len(members) * f) for f in fractions]
            cuts = [0, len(members) - sum(counts)]
            for count in counts:
                cuts.append(cuts[-1] + count)
            for part, (low, high) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
                parts[part] += [members[i] for i in order[low:high]]
        return parts

    for fractions, seed in (([0.25], 1), ([0.2, 0.3], 7)):
        got = split_samples(FileSamples.of(pairs), fractions, seed)
        assert [list(part) for part in got] == reference(pairs, fractions, seed)


def test_mapped_rows_read_as_a_batch_equal_the_rows_read_one_by_one(tmp_path: Path) -> None:
    rows = np.random.default_rng(0).integers(0, 256, (9, 4, 5, 3), dtype=np.uint8)
    path = tmp_path / "rows.u8"
    path.write_bytes(rows.tobytes())
    mapped = MappedImages(path, rows.shape, np.array([0, 2, 3, 5, 6, 8]))  # rows 1, 4, 7 did not decode
    wanted = np.array([5, 0, 3, 3, 1])
    assert np.array_equal(mapped.read_rows(wanted), np.stack([mapped[i] for i in wanted.tolist()]))
    assert np.array_equal(mapped.read_rows(wanted), rows[[8, 0, 5, 5, 2]])


@pytest.mark.parametrize("cache", ["disk", "memory"])
def test_cached_augmentation_free_batches_are_read_whole_and_equal_the_per_sample_pipeline(
    tmp_path: Path, cache: str
) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=6, odd_files=False)
    batches = []
    for workers in (0, 2):
        dm = datamodule(root, tmp_path / "c", cache=cache, num_workers=workers, batch_size=5,
                        normalization="imagenet")  # fmt: skip
        loader = dm.train_dataloader()
        assert isinstance(loader, FinishingLoader) and dm.train_set.batched
        loader.sampler.set_epoch(2)
        order = list(loader.sampler)
        got = list(loader)
        dm.train_set.batched = False  # the per-sample path: albumentations' Normalize on each image
        expected = [torch.stack([dm.train_set[i][0] for i in order[k : k + 5]]) for k in range(0, 12, 5)]
        labels = [torch.tensor([dm.train_set[i][1] for i in order[k : k + 5]]) for k in range(0, 12, 5)]
        assert [len(y) for _, y in got] == [5, 5, 2]
        for (x, y), want, want_y in zip(got, expected, labels, strict=True):
            assert x.dtype == torch.float32 and x.is_contiguous() and torch.equal(x, want)
            assert y.dtype == torch.int64 and torch.equal(y, want_y)
        batches.append(got)
        vx, _ = next(iter(dm.val_dataloader()))
        assert torch.equal(vx, torch.stack([dm.val_set[i][0] for i in range(5)]))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(*batches, strict=True))  # any worker count
    pinned = datamodule(root, tmp_path / "c", cache=cache, pin_memory=True)
    assert not isinstance(pinned.train_dataloader(), FinishingLoader)


@pytest.mark.parametrize(("mode", "channels"), [("grayscale", 1), ("rgba", 4)])
def test_whole_batches_of_one_and_four_channels_equal_the_per_sample_pipeline(
    tmp_path: Path, mode: str, channels: int
) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=4, odd_files=False)
    dm = datamodule(root, tmp_path / "c", cache="memory", color_mode=mode, normalization="imagenet", batch_size=8)
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (4, channels, 16, 16) and dm.val_set.batched
    dm.val_set.batched = False
    assert torch.equal(x, torch.stack([dm.val_set[i][0] for i in range(4)]))


@pytest.mark.parametrize(("cache", "name"), [("disk", "flip_rotate_zoom"), ("none", "strong")])
def test_augmented_batches_ship_uint8_and_equal_the_per_sample_pipeline(tmp_path: Path, cache: str, name: str) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=6, odd_files=False)
    batches = []
    for workers in (0, 2):
        dm = datamodule(root, tmp_path / "c", cache=cache, num_workers=workers, batch_size=5,
                        augmentation=augmentation(name))  # fmt: skip
        loader = dm.train_dataloader()
        assert isinstance(loader, FinishingLoader) and dm.train_set.batched and dm.train_set.augment is not None
        loader.sampler.set_epoch(1)
        order = list(loader.sampler)  # (index, sample seed) pairs
        got = [x for x, _ in loader]
        dm.train_set.batched = False
        expected = [torch.stack([dm.train_set[pair][0] for pair in order[k : k + 5]]) for k in range(0, 12, 5)]
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
        batches.append(got)
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True))  # any worker count
    dm.train_set.batched = True
    shipped, labels = dm.train_set.__getitems__(order[:5])  # what a worker hands over: uint8, normalised after
    assert shipped.dtype == torch.uint8 and shipped.shape == (5, 3, 16, 16) and labels.dtype == torch.int64


def test_lightning_rebuilding_a_finishing_loader_for_ddp_keeps_its_finish(tmp_path: Path) -> None:
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DataLoader, DistributedSampler

    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=6, odd_files=False)
    dm = datamodule(root, tmp_path / "c", batch_size=4)
    with _replace_dunder_methods(DataLoader, "dataset"):  # as Lightning asks a datamodule for its loaders
        loader = dm.val_dataloader()
    sampler = DistributedSampler(dm.val_set, num_replicas=2, rank=1, shuffle=False)
    rebuilt = _update_dataloader(loader, sampler, mode=RunningStage.VALIDATING)
    assert isinstance(rebuilt, FinishingLoader) and rebuilt.finish is not None and rebuilt.sampler is sampler
    x, _ = next(iter(rebuilt))
    assert x.dtype == torch.float32 and torch.equal(x, torch.stack([dm.val_set[i][0] for i in list(sampler)[:4]]))


# ---------------------------------------------------------------------- augmentation on the batch's device
def test_device_augmentation_is_a_function_of_each_samples_seed() -> None:
    pipeline = DeviceAugmentation(augmentation_transforms(augmentation("strong")), [0.5] * 3, [0.25] * 3)
    x = torch.randint(0, 256, (6, 3, 24, 24), dtype=torch.uint8)
    seeds = torch.tensor([11, 12, 13, 14, 15, 16])
    out = pipeline(x, seeds)
    assert out.shape == (6, 3, 24, 24) and out.dtype == torch.float32
    assert torch.equal(pipeline(x, seeds), out)  # the same seeds: the same images
    order = torch.tensor([5, 3, 1, 0, 2, 4])  # other batch companions and positions change nothing
    assert torch.equal(pipeline(x[order], seeds[order]), out[order])
    assert torch.equal(pipeline(x[2:3], seeds[2:3]), out[2:3])
    other = pipeline(x, seeds + 100)
    assert sum(not torch.equal(a, b) for a, b in zip(other, out, strict=True)) >= 4
    plain = pipeline(x)  # no seeds (evaluation batches): normalised only
    assert torch.allclose(plain, (x.float() / 255 - 0.5) / 0.25)


def test_device_flip_and_identity_affine_match_the_cpu_pipeline(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=4, odd_files=False)
    flip = augmentation("flip", device="accelerator")
    flip["transforms"][0]["p"] = 1.0
    affine = {"_target_": "albumentations.Affine", "rotate": [90, 90], "p": 1.0}  # exact on a square image
    flip["transforms"].append(affine)
    dm = datamodule(root, tmp_path / "c", augmentation=flip, cache="memory")
    dm.trainer = None
    x, y, seeds = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 16, 16) and seeds.dtype == torch.int64
    batch = dm.on_after_batch_transfer([x, y, seeds], 0)
    expected = torch.rot90(torch.flip(x.float() / 255, dims=[-1]), 1, dims=(2, 3))
    assert torch.allclose(batch[0], expected, atol=1e-5) and torch.equal(batch[1], y)
    vx, _ = next(iter(dm.val_dataloader()))  # evaluation batches: normalised on the CPU, as evaluate/predict need
    assert vx.dtype == torch.float32 and torch.equal(vx[0], dm.val_set[0][0])


def test_device_augmented_epochs_are_the_same_with_any_worker_count(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=6, odd_files=False)
    batches = []
    for workers in (0, 2):
        dm = datamodule(root, tmp_path / "c", augmentation=augmentation("strong", device="accelerator"),
                        num_workers=workers, batch_size=5)  # fmt: skip
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        batches.append([dm.on_after_batch_transfer(b, 0)[0] for b in loader])
    assert len(batches[0]) == 3 and all(torch.equal(a, b) for a, b in zip(*batches, strict=True))


def test_device_augmentation_refuses_a_transform_it_has_no_version_of(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", layout="folders", per_class=2, odd_files=False)
    config = {"device": "accelerator", "transforms": [{"_target_": "albumentations.CLAHE"}]}
    with pytest.raises(CnnZooError, match=r"no device version of albumentations.CLAHE; supported: HorizontalFlip"):
        datamodule(root, tmp_path / "c", augmentation=config)
    with pytest.raises(CnnZooError, match=r"augmentation.device must be one of \['cpu', 'accelerator', 'auto'\]"):
        datamodule(root, tmp_path / "c", augmentation={"device": "gpu", "transforms": []})


# ---------------------------------------------------------------------- runs through the command line
def test_run_with_disk_cache_and_device_augmentation_resumes_exactly(tmp_path: Path) -> None:
    data_dir, args = pets_run(
        tmp_path,
        "data.batch_size=4",
        "data.cache=disk",
        f"data.cache_dir={tmp_path / 'cache'}",
        "augmentation=flip_rotate_zoom",
        "augmentation.device=accelerator",
        "model=small_cnn",
        "model.net.filters=[4,8]",
        "callbacks.last_checkpoint.every_n_train_steps=3",
    )
    # 16 training images, 4 steps per epoch; killed at step 7 (two workers), resumed after the step-6 checkpoint
    whole, killed = kill_and_resume(data_dir, tmp_path, args, kill_at=7, killed_args=("data.num_workers=2",))
    assert_same_run(whole, killed)
    log = (killed / "train.log").read_text()
    assert "resuming mid-epoch 1 after its first 2 batches" in log
    assert "decoding train images into the cache" not in log  # the uninterrupted run decoded it; these mapped it
    assert log.count("mapped from the decoded cache") >= 3


def test_run_with_disk_cache_and_whole_batches_resumes_exactly(tmp_path: Path) -> None:
    data_dir, args = pets_run(
        tmp_path,
        "data.batch_size=4",
        "data.cache=disk",
        f"data.cache_dir={tmp_path / 'cache'}",
        "augmentation=none",
        "model=small_cnn",
        "model.net.filters=[4,8]",
        "callbacks.last_checkpoint.every_n_train_steps=3",
    )
    # whole uint8 batches from the cache, normalised in the trainer's process: killed at step 7 (two workers)
    whole, killed = kill_and_resume(data_dir, tmp_path, args, kill_at=7, killed_args=("data.num_workers=2",))
    assert_same_run(whole, killed)
    assert "resuming mid-epoch 1 after its first 2 batches" in (killed / "train.log").read_text()


def truncating_run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    data_dir, args = pets_run(tmp_path, "data.batch_size=4", "data.cache=none", "model=small_cnn",
                              "model.net.filters=[4,8]", "trainer.max_epochs=1", "test=false", *extra)  # fmt: skip
    victim = data_dir / "pets" / "train" / "dogs" / "img_0002.jpg"
    write_truncatable_jpeg(victim)
    run = tmp_path / "run"
    callback = [
        "+callbacks.truncate._target_=tests.fixtures_image_cache.TruncateAtStart",
        f"+callbacks.truncate.path={victim}",
    ]
    args = [a for a in args if not a.startswith("+callbacks.self_kill")]
    return cli(data_dir, *args, *callback, f"hydra.run.dir={run}"), run


def test_a_jpeg_truncated_after_setup_is_skipped_and_counted(tmp_path: Path) -> None:
    result, run = truncating_run(
        tmp_path, "data.num_workers=2", "data.max_skipped_share=0.1"
    )  # flagged in a worker, counted in the trainer
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["data/skipped_images"] == 1.0
    log = (run / "train.log").read_text()
    assert "skipped 1 image(s) that failed to decode this epoch" in log and "img_0002.jpg" in log


def test_more_skips_than_the_share_allowed_stop_the_run_with_one_line(tmp_path: Path) -> None:
    result, run = truncating_run(tmp_path, "data.max_skipped_share=0.05")  # 1 of 16 is over 5 %
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: 1 of 16 images of the train split failed to decode during the run")
    assert "img_0002.jpg" in lines[-1] and "data.max_skipped_share=0.05" in lines[-1]
