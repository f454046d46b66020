"""Image classification from a folder tree with one sub-folder per class (Keras' `flow_from_directory`).

Two layouts:
- `<root>/{train,validation,test}/<class>/*.jpg` (the course's cats_and_dogs_small);
- `<root>/<class>/*.jpg`, split per class with a seed by `val_size` (and `test_size`), fractions of each class.

`color_mode` (Keras' names): `rgb` (3 channels), `grayscale` (1) or `rgba` (4), end to end.

Class names map to indices in sorted order. `cache` says where the decoded, resized uint8 images live:
- `memory`: every file decoded at setup into one array (epochs compute-bound; each run and rank decodes);
- `disk`: decoded once into a memory-mapped file under `<cache_dir>/decoded_images` that later runs, sweep
  trials and DDP ranks map instead of decoding (`cnn_zoo.data.decoded_cache`); memory bounded by the page cache;
- `none`: files only verified at setup and decoded on every access; one that fails then is replaced by a
  readable neighbour and counted (`data/skipped_images` in metrics.json); more than `max_skipped_share` of a
  split stops the run with one line (`cnn_zoo.data.skipped`);
- `auto` (default): `memory` when all splits decoded fit in `memory_cache_gb`, else `disk`.
Unreadable files found at setup are reported in one warning and skipped, or are fatal with `on_bad_file=error`.
Augmentation (albumentations) touches the training split only; with `augmentation.device=accelerator` (or
`auto` on a GPU) batches leave the loader as uint8 and are augmented and normalised on the training device
(`cnn_zoo.data.device_augment`), seeded per sample as on the CPU.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info

from cnn_zoo.data.base import ZooDataModule, renamed, require_fraction, resolve_dir
from cnn_zoo.data.batches import LutNormalize
from cnn_zoo.data.decoded_cache import DecodedCache, DiskFull, Listing, MappedImages
from cnn_zoo.data.device_augment import AUGMENTATION_DEVICES, DeviceAugmentation
from cnn_zoo.data.sampling import SeededSamples
from cnn_zoo.data.spec import DataSpec, DataStats, ImagePreprocessing
from cnn_zoo.data.transforms import (
    COLOR_MODES,
    IMAGE_EXTENSIONS,
    ImageTransform,
    augmentation_transforms,
    image_size_pair,
    normalization_stats,
    resampling,
)
from cnn_zoo.runtime.config_values import to_plain, user_cache_dir
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.progress import track

log = logging.getLogger(__name__)

CATSDOGS = "cats_and_dogs_small"  # the course's folder, which `cnn-zoo-prepare catsdogs` makes
CACHE_MODES = ("auto", "memory", "disk", "none")


class FileSamples(Sequence[tuple[Path, int]]):
    """The (path, class index) pairs of a split, held as path strings and an int64 array of labels.

    A 100,000-photo folder costs no `Path` object per file at setup (that alone was 0.34 CPU s on the loaded 2-core
    EPYC); `samples[i]` and iteration still give `(Path, int)` pairs, as the plain list of pairs did.
    """

    def __init__(self, paths: Sequence[str] = (), labels: Any = ()) -> None:
        self.paths = [str(path) for path in paths] if not isinstance(paths, list) else paths
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    @classmethod
    def of(cls, pairs: Sequence[tuple[Any, int]]) -> FileSamples:
        """From (path, label) pairs (a `FileSamples` is returned as it is)."""
        if isinstance(pairs, FileSamples):
            return pairs
        return cls([str(path) for path, _ in pairs], [int(label) for _, label in pairs])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return FileSamples(self.paths[index], self.labels[index])
        return Path(self.paths[index]), int(self.labels[index])

    def __iter__(self) -> Iterator[tuple[Path, int]]:
        return ((Path(path), label) for path, label in zip(self.paths, self.labels.tolist(), strict=True))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FileSamples):
            return self.paths == other.paths and np.array_equal(self.labels, other.labels)
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"FileSamples({len(self)} files)"

    def take(self, rows: Any) -> FileSamples:
        """The samples at `rows` (an index array or list), in that order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        return FileSamples([self.paths[row] for row in rows.tolist()], self.labels[rows])

    def __add__(self, other: Sequence[tuple[Path, int]]) -> FileSamples:
        other = FileSamples.of(other)
        return FileSamples(self.paths + other.paths, np.concatenate([self.labels, other.labels]))


Samples = FileSamples


def walk_images(folder: str) -> Iterator[str]:
    """The image files under `folder` (sub-folders too), unordered, as found: `os.scandir` reads the file types
    with the names, so 100,000 photos cost no `stat` each (`rglob` and `is_file` did, twice the whole listing)."""
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    pending.append(entry.path)
                elif is_image_entry(entry):
                    yield entry.path


def has_image(folder: str) -> bool:
    """Whether `folder` (or a sub-folder) holds an image file: stops at the first one."""
    return next(walk_images(folder), None) is not None


def is_image_entry(entry: os.DirEntry) -> bool:
    """A visible file with an image extension (the name's last dot on: `os.path.splitext` for visible names)."""
    name = entry.name
    return not name.startswith(".") and name[name.rfind(".") :].lower() in IMAGE_EXTENSIONS and entry.is_file()


def class_folders(folder: Path) -> list[str]:
    """Sub-folders holding at least one image, sorted: their order is the class index order."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        children = [entry for entry in entries if entry.is_dir() and not entry.name.startswith(".")]
    return sorted(child.name for child in children if has_image(child.path))


def list_samples(folder: Path, class_names: Sequence[str], known: Sequence[str] | None = None) -> FileSamples:
    """(path, class index) for every image under `folder/<class>/`, in a stable order.

    `known`: the class folders of `folder` when the caller listed them already (no second walk)."""
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in (class_folders(folder) if known is None else known) if name not in index]
    if unknown:
        raise CnnZooError(
            f"{folder} has class folders {unknown} that the training folder lacks (classes: {list(class_names)}); "
            "every split needs the same class sub-folders"
        )
    paths: list[str] = []
    labels: list[np.ndarray] = []
    for name in class_names:
        found = image_paths(folder / name)
        paths += found
        labels.append(np.full(len(found), index[name], dtype=np.int64))
    return FileSamples(paths, np.concatenate(labels) if labels else np.zeros(0, np.int64))


def image_paths(folder: Path) -> list[str]:
    """The image files under `folder` (sub-folders too) as strings, in pathlib's order (component by component).

    Sorting by the path with its separators made NUL (below every character a name can hold) is the component
    order, without splitting every path into a list.
    """
    found = list(walk_images(str(folder))) if folder.is_dir() else []
    found.sort(key=lambda path: path.replace(os.sep, "\0"))
    return found


def image_files(folder: Path) -> list[Path]:
    """`image_paths` as `Path` objects."""
    return [Path(path) for path in image_paths(folder)]


def split_samples(samples: Sequence[tuple[Path, int]], fractions: Sequence[float], seed: int) -> list[FileSamples]:
    """Per class, a seeded shuffle cut into [rest, *fractions]: stratified and disjoint by construction."""
    samples = FileSamples.of(samples)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(samples.labels).tolist():
        members = np.flatnonzero(samples.labels == label)
        order = rng.permutation(len(members))
        counts = [round(len(members) * f) for f in fractions]
        start = len(members) - sum(counts)
        cuts = [0, start]
        for count in counts:
            cuts.append(cuts[-1] + count)
        for part, (low, high) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
            parts[part].append(members[order[low:high]])
    return [samples.take(np.concatenate(rows) if rows else np.zeros(0, np.int64)) for rows in parts]


def check_file(path: Path) -> None:
    """The cheap check for uncached data: header parse and structural verify, no full decode."""
    with Image.open(path) as image:
        image.verify()


def scan(
    samples: Sequence[tuple[Any, int]], work: Callable[[Any], Any], workers: int, desc: str = "reading images"
) -> tuple[Any, list[Any], list[tuple[Path, str]]]:
    """Run `work` on every file (threads: PIL releases the GIL while decoding); split out the failures.

    `samples`: a `FileSamples` (the good ones come back as one) or a list of (path, label) pairs (a list)."""

    def attempt(path: Any) -> tuple[Any, str | None]:
        try:
            return work(path), None
        except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError...) for bad files
            return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"

    paths = samples.paths if isinstance(samples, FileSamples) else [path for path, _ in samples]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(track(pool.map(attempt, paths), desc, total=len(paths)))
    good_rows, outputs, bad = [], [], []
    for row, (output, error) in enumerate(results):
        if error is None:
            good_rows.append(row)
            outputs.append(output)
        else:
            bad.append((Path(paths[row]), error))
    good = samples.take(good_rows) if isinstance(samples, FileSamples) else [samples[row] for row in good_rows]
    return good, outputs, bad


def uint8_augmentations(augment: Sequence[Any]) -> bool:
    """Whether these albumentations transforms keep a uint8 image uint8 and its size (probed on a gray image):
    then the training loader can ship their output as uint8 batches, normalised after."""
    import albumentations as A

    probe = np.full((32, 32, 3), 128, dtype=np.uint8)
    try:
        out = A.Compose([*augment])(image=probe)["image"]
    except Exception:  # a transform that needs other inputs: keep the per-sample path
        return False
    return isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == probe.shape


class ImageFiles(SeededSamples, Dataset):
    """(image tensor, class index) pairs; images come from the cache (an array or a mapped file) or are decoded
    on access.

    Indexed with `(index, sample_seed)` (the training sampler, when the transform augments), the augmentation of
    that sample is drawn from `sample_seed` alone; with a plain index, from the pipeline's running generators.
    With `raw` set (device augmentation), items are (uint8 CHW tensor, label[, sample_seed]) instead: the batch
    is augmented and normalised on the device, from the seeds it carries (-1: no seed).

    With `batched` set, the DataLoader asks for whole batches (`__getitems__`): one uint8 (N, C, H, W) tensor,
    which is what crosses from a worker process (a quarter of float32's bytes), and `finish_batch` normalises it
    in the loading process with the pipeline's own per-channel table: the same float32 values as the per-sample
    path, at a fraction of its CPU time. Cached rows without augmentation are read in file order in one go;
    otherwise each image is decoded (or read) and augmented on its own, uint8 in, uint8 out (`augment`: the
    pipeline's transforms before its normalisation, drawing from the sample's seed exactly as the whole pipeline
    does, since the normalisation draws nothing).
    """

    def __init__(
        self,
        samples: Sequence[tuple[Any, int]],
        transform: ImageTransform,
        cache: Any = None,
        augment: Any = None,
        plain: ImageTransform | None = None,
    ) -> None:
        self.samples = FileSamples.of(samples)
        self.transform = transform
        self.cache = cache
        self.augment = augment  # `transform`'s augmentations alone (an albumentations Compose), or None
        self.plain = plain or transform  # the same normalisation, nothing random: its table is `normalize`
        self.raw = False
        self.batched = False
        self.normalize: LutNormalize | None = None
        # files that failed to decode at training time, flagged by any DataLoader worker (shared memory)
        self.failed = torch.zeros(len(samples) if cache is None else 0, dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache[index]
        # A file that passed the setup check may still fail to decode (changed or truncated since): use the
        # next readable one rather than kill the epoch, flag it (counted by cnn_zoo.data.skipped) and say so once.
        for offset in range(len(self.samples)):
            candidate = (index + offset) % len(self.samples)
            if self.failed[candidate]:
                continue
            try:
                return self.transform.decode(self.samples.paths[candidate])
            except Exception as err:
                self.failed[candidate] = True
                log.warning("skipping unreadable image %s (%s)", self.samples.paths[candidate], err)
        raise CnnZooError("no image of this split can be decoded")

    def failures(self) -> list[Path]:
        """The files flagged unreadable during loading so far (by this process or its workers)."""
        return [Path(self.samples.paths[i]) for i in torch.nonzero(self.failed).flatten().tolist()]

    @property
    def wants_sample_seeds(self) -> bool:
        return self.transform.random

    @property
    def batchable(self) -> bool:
        """Whether whole uint8 batches can be served: not raw, and any randomness in `augment` (uint8 -> uint8)."""
        return not self.raw and not self.plain.random and (not self.transform.random or self.augment is not None)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Any, ...]:
        index, seed = index if isinstance(index, tuple) else (index, None)
        label = int(self.samples.labels[index])
        if self.raw:
            image = torch.from_numpy(np.ascontiguousarray(self.image(index))).permute(2, 0, 1)
            return (image, label, -1 if seed is None else int(seed)) if self.transform.random else (image, label)
        return self.transform(self.image(index), seed), label

    def __getitems__(self, indices: list[Any]) -> list[Any]:
        """A whole batch: [uint8 (N, C, H, W), int64 labels] when `batched`, else the samples one by one."""
        if not self.batched:
            return [self[index] for index in indices]
        rows = np.asarray([index[0] if isinstance(index, tuple) else index for index in indices], dtype=np.int64)
        if self.transform.random or self.cache is None:
            images = np.stack([self.augmented(index) for index in indices])
        elif isinstance(self.cache, MappedImages):
            images = self.cache.read_rows(rows)
        else:
            images = self.cache[rows]
        batch = torch.empty((len(rows), images.shape[3], *images.shape[1:3]), dtype=torch.uint8)
        if get_worker_info() is not None:  # written once, straight into what the worker hands over
            batch.share_memory_()
        batch.copy_(torch.from_numpy(images).permute(0, 3, 1, 2))
        return [batch, torch.from_numpy(self.samples.labels[rows])]

    def augmented(self, index: int | tuple[int, int]) -> np.ndarray:
        """One image, uint8 (H, W, C), through `augment` when the pipeline has randomness (seeded as `transform`)."""
        index, seed = index if isinstance(index, tuple) else (index, None)
        image = self.image(index)
        if not self.transform.random:
            return image
        if seed is not None:
            self.augment.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self.augment(image=image)["image"]
        if out.dtype != np.uint8 or out.shape != image.shape:
            raise CnnZooError(
                f"an augmentation turned a uint8 {image.shape} image into {out.dtype} {out.shape}: the training "
                "loader serves uint8 batches of one size; set data.pin_memory=true to keep the per-sample path"
            )
        return out

    def finish_batch(self, batch: list[Tensor]) -> list[Tensor]:
        """A `__getitems__` batch, normalised as the per-sample pipeline does (in the loading process)."""
        if self.normalize is None:
            self.normalize = LutNormalize.of(self.plain, batch[0].shape[1])
        return [self.normalize(batch[0]), *batch[1:]]


class ImageFolderDataModule(ZooDataModule):
    """Folder-per-class images, resized to `image_size`, normalised by `rescale` ([0,1]) or `imagenet` mean/std."""

    def __init__(
        self,
        data_dir: str = "data",
        folder: str = "cats_and_dogs_small",
        image_size: int | list[int] = 180,
        normalization: str = "rescale",
        color_mode: str = "rgb",
        augmentation: dict[str, Any] | None = None,
        val_size: float = 0.0,
        test_size: float = 0.0,
        seed: int = 42,
        batch_size: int = 32,
        num_workers: int = 2,
        cache: str | bool = "auto",
        cache_dir: str | None = None,
        memory_cache_gb: float = 1.0,
        max_skipped_share: float = 0.01,
        on_bad_file: str = "skip",
        split_dirs: dict[str, str] | None = None,
        pin_memory: bool = False,
        mean: list[float] | None = None,  # normalization=weights: the pretrained weights' (models/preprocessing.py)
        std: list[float] | None = None,
        interpolation: str = "bilinear",
        crop_pct: float | None = None,  # None: squash to image_size (Keras); a fraction: resize + centre crop
        validation_split: float | None = None,  # deprecated: val_size
        test_split: float | None = None,  # deprecated: test_size
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        self.root = resolve_dir(data_dir) / folder
        self.image_size = image_size_pair(image_size)
        if color_mode not in COLOR_MODES:
            raise CnnZooError(f"data.color_mode must be one of {list(COLOR_MODES)} (Keras' names), got {color_mode!r}")
        self.color_mode = color_mode
        self.normalization = normalization
        self.mean, self.std = normalization_stats(normalization, COLOR_MODES[color_mode], mean, std)
        resampling(interpolation)
        if crop_pct is not None and not 0 < float(crop_pct) <= 1:
            raise CnnZooError(f"data.crop_pct must be null or in (0, 1], got {crop_pct!r}")
        self.interpolation, self.crop_pct = str(interpolation), None if crop_pct is None else float(crop_pct)
        val_size = renamed("validation_split", "val_size", validation_split, val_size)
        self.validation_split = require_fraction("val_size", val_size)
        self.test_split = require_fraction("test_size", renamed("test_split", "test_size", test_split, test_size))
        if self.validation_split + self.test_split >= 1.0:
            raise CnnZooError("data.val_size + data.test_size must leave files for training (sum < 1)")
        self.seed = int(seed)
        cache = {True: "auto", False: "none"}.get(cache, cache) if isinstance(cache, bool) else str(cache)
        if cache not in CACHE_MODES:
            raise CnnZooError(f"data.cache must be one of {list(CACHE_MODES)}, got {cache!r}")
        self.cache_setting = cache
        self.cache_mode = cache if cache != "auto" else None  # auto: decided by size once the files are listed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else user_cache_dir()
        if float(memory_cache_gb) < 0:
            raise CnnZooError(f"data.memory_cache_gb must be >= 0, got {memory_cache_gb!r}")
        self.memory_cache_bytes = float(memory_cache_gb) * 2**30
        if not 0.0 <= float(max_skipped_share) <= 1.0:
            raise CnnZooError(f"data.max_skipped_share must be a fraction in [0, 1], got {max_skipped_share!r}")
        self.max_skipped_share = float(max_skipped_share)
        if on_bad_file not in ("skip", "error"):
            raise CnnZooError(f"data.on_bad_file must be 'skip' or 'error', got {on_bad_file!r}")
        self.on_bad_file = on_bad_file
        self.split_dirs = {"train": "train", "val": "validation", "test": "test", **(to_plain(split_dirs) or {})}
        augmentation = to_plain(augmentation) or {}
        self.augmentation_device = str(augmentation.get("device") or "cpu")
        if self.augmentation_device not in AUGMENTATION_DEVICES:
            raise CnnZooError(
                f"augmentation.device must be one of {list(AUGMENTATION_DEVICES)}, got {self.augmentation_device!r}"
            )
        self.augment = augmentation_transforms({k: v for k, v in augmentation.items() if k != "device"})
        self.device_pipeline: DeviceAugmentation | None = None
        self.train_pipeline = None
        self.splits: dict[str, Samples] = {}
        self.datasets: dict[str, ImageFiles] = {}
        self.skipped: list[tuple[Path, str]] = []

    # ------------------------------------------------------------------ file lists
    def find_splits(self) -> tuple[list[str], dict[str, Samples]]:
        """Class names and the (path, label) lists of train/val/test, from either layout."""
        root = self.root
        if not root.is_dir():
            raise CnnZooError(
                f"image folder not found: {root}. Set CNN_ZOO_DATA_DIR (or data.data_dir) and data.folder so that "
                f"<data_dir>/<folder> holds one sub-folder per class, or train/ validation/ test/ folders of them"
                + (f" (make it: `cnn-zoo-prepare catsdogs data_dir={root.parent}`)" if root.name == CATSDOGS else "")
            )
        train_dir = root / self.split_dirs["train"]
        if train_dir.is_dir():
            return self.folder_layout(train_dir)
        class_names = class_folders(root)
        if not class_names:
            raise CnnZooError(
                f"no class sub-folders with images in {root}: expected {root}/<class>/<image>.jpg "
                f"(or {root}/{self.split_dirs['train']}/<class>/...); image types: jpg, png, bmp, gif, webp, tif"
            )
        if self.validation_split <= 0:
            raise CnnZooError(
                f"{root} is one folder of classes without train/validation folders: set data.val_size "
                "(e.g. 0.25) to hold out validation images"
            )
        samples = list_samples(root, class_names)
        fractions = [self.validation_split] + ([self.test_split] if self.test_split > 0 else [])
        parts = split_samples(samples, fractions, self.seed)
        splits = {"train": parts[0], "val": parts[1], "test": parts[2] if self.test_split > 0 else FileSamples()}
        return class_names, splits

    def folder_layout(self, train_dir: Path) -> tuple[list[str], dict[str, Samples]]:
        class_names = class_folders(train_dir)
        if not class_names:
            raise CnnZooError(f"no class sub-folders with images in {train_dir}: expected {train_dir}/<class>/*.jpg")
        train = list_samples(train_dir, class_names, known=class_names)
        val_dir, test_dir = self.root / self.split_dirs["val"], self.root / self.split_dirs["test"]
        if val_dir.is_dir():
            val = list_samples(val_dir, class_names)
        elif self.validation_split > 0:
            train, val = split_samples(train, [self.validation_split], self.seed)
        else:
            raise CnnZooError(
                f"{val_dir} not found: add that folder of class sub-folders, name it with "
                "data.split_dirs.val, or hold out part of the training images with data.val_size=0.2"
            )
        test = list_samples(test_dir, class_names) if test_dir.is_dir() else FileSamples()
        return class_names, {"train": train, "val": val, "test": test}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        """Find the files once; decode the splits `stage` needs (`test`/`predict`: the test split only)."""
        if self.spec is None:
            self.describe(*self.find_splits())
            self.cache_mode = self.cache_mode or self.automatic_cache()
        wanted = ["test"] if stage in ("test", "predict") else ["train", "val", "test"]
        if not self.splits["test"]:
            wanted = ["val" if name == "test" else name for name in wanted]
        self.skipped = []
        for name in dict.fromkeys(wanted):
            if name not in self.datasets:
                transform = self.train_transform if name == "train" else self.eval_transform
                self.datasets[name] = self.load(self.splits[name], transform, name)
        self.report_skipped()
        self.train_set, self.val_set = self.datasets.get("train"), self.datasets.get("val")
        self.test_set = self.datasets.get("test", self.val_set)
        counts = self.spec.stats.class_counts
        if self.train_set is not None:
            counts = tuple(np.bincount(self.train_set.samples.labels, minlength=self.spec.num_classes).tolist())
        stats = DataStats(class_counts=counts, split_sizes={name: len(ds) for name, ds in self.datasets.items()})
        self.spec = replace(self.spec, stats=stats)

    def describe(self, class_names: list[str], splits: dict[str, Samples]) -> None:
        """The spec, and the transforms built from it."""
        if len(class_names) < 2:
            raise CnnZooError(f"{self.root} has one class ({class_names[0]}); classification needs at least two")
        for name in ("train", "val"):
            if not splits[name]:
                raise CnnZooError(f"the {name} split of {self.root} has no images; every class needs some")
        if not splits["test"]:
            log.warning("no test split under %s: testing on the validation split", self.root)
        self.splits = splits
        preprocessing = ImagePreprocessing(
            size=tuple(self.image_size),
            color_mode=self.color_mode,
            normalization=self.normalization,
            mean=tuple(self.mean),
            std=tuple(self.std),
            resize=self.interpolation,
            crop_pct=self.crop_pct,
        )
        self.spec = DataSpec(
            kind="image",
            class_names=tuple(class_names),
            input_shape=(preprocessing.channels, *self.image_size),
            input_dtype="float32",
            preprocessing=preprocessing,
            train_augmentation=bool(self.augment),  # transfer models cache backbone features only without it
        )
        self.eval_transform = preprocessing.transform()  # the one predict uses too
        self.train_transform: ImageTransform = preprocessing.transform(self.augment)
        self.train_pipeline = self.train_transform.pipeline
        if self.augmentation_device != "cpu":  # unsupported transforms are refused here, before any decoding
            self.device_pipeline = DeviceAugmentation(self.augment, self.mean, self.std)

    def automatic_cache(self) -> str:
        """`data.cache=auto`: memory while every split decoded fits in `data.memory_cache_gb`, else disk."""
        height, width = self.image_size
        files = sum(len(samples) for samples in self.splits.values())
        needed = files * height * width * COLOR_MODES[self.color_mode]
        mode = "memory" if needed <= self.memory_cache_bytes else "disk"
        log.info(
            "data.cache=auto: %d images decoded are %.2f GiB, %s data.memory_cache_gb=%g: caching them %s",
            files, needed / 2**30, "within" if mode == "memory" else "over", self.memory_cache_bytes / 2**30,
            "in memory" if mode == "memory" else f"on disk under {self.cache_dir / 'decoded_images'}",
        )  # fmt: skip
        return mode

    def load(self, samples: Samples, transform: ImageTransform, split: str) -> ImageFiles:
        """Decode every file once (memory or disk cache) or verify it (no cache); keep the readable ones."""
        samples = FileSamples.of(samples)
        if self.cache_mode == "disk":
            try:
                return self.load_disk(samples, transform, split)
            except DiskFull as err:
                log.warning(
                    "no room for the decoded-image cache (%s): decoding on the fly instead (data.cache=none); "
                    "free space or set CNN_ZOO_CACHE_DIR (data.cache_dir) to a larger disk",
                    err,
                )
                self.cache_mode = "none"
        memory = self.cache_mode == "memory"
        work = transform.decode if memory else check_file
        stage = f"{'decoding' if memory else 'checking'} {split} images"
        good, outputs, bad = scan(samples, work, self.num_workers or 1, stage)
        self.check_bad(bad, good, split)
        cache = np.stack(outputs) if memory else None
        return self.image_files(good, transform, cache)

    def load_disk(self, samples: Samples, transform: ImageTransform, split: str) -> ImageFiles:
        """Map this split's decoded cache, decoding it first when no whole one matches the files."""
        prep = self.spec.preprocessing
        group = {"folder": str(self.root), "split": split, "size": list(prep.size), "color_mode": prep.color_mode,
                 "resize": prep.resize, "crop_pct": prep.crop_pct}  # every decode setting: fmt: skip
        cache = DecodedCache(self.cache_dir, group, (*prep.size, prep.channels))
        listing = Listing.of(samples.paths)
        stage = f"decoding {split} images into the cache"
        mapped, bad_rows, built = cache.open_or_build(listing, transform.decode, self.num_workers or 1, stage)
        if not built:
            log.info("%s images: %d mapped from the decoded cache %s", split, len(mapped), mapped.path)
        bad = [(Path(samples.paths[row]), reason) for row, reason in bad_rows]
        good = samples.take(mapped.rows) if bad_rows else samples
        self.check_bad(bad, good, split)
        return self.image_files(good, transform, mapped)

    def image_files(self, samples: FileSamples, transform: ImageTransform, cache: Any) -> ImageFiles:
        """The dataset of a split; the training one also gets its augmentations alone, for whole uint8 batches."""
        augment = None
        if transform is self.train_transform and self.augment and uint8_augmentations(self.augment):
            import albumentations as A

            augment = A.Compose(list(self.augment))
        return ImageFiles(samples, transform, cache, augment=augment, plain=self.eval_transform)

    def check_bad(self, bad: list[tuple[Path, str]], good: Samples, split: str) -> None:
        """Record the unreadable files of a split; fatal with `on_bad_file=error`, or when none is readable."""
        self.skipped += bad
        if bad and self.on_bad_file == "error":
            path, reason = bad[0]
            raise CnnZooError(
                f"unreadable image {path} ({reason}) and {len(bad) - 1} more in the {split} split; "
                "remove or replace them, or set data.on_bad_file=skip"
            )
        if not good:
            raise CnnZooError(f"no image of the {split} split of {self.root} can be read")

    # ------------------------------------------------------------------ loaders
    def device_augmenting(self) -> bool:
        """Whether batches leave the loader as uint8, to be augmented and normalised on the training device."""
        if self.device_pipeline is None:
            return False
        if self.augmentation_device == "accelerator":
            return True
        strategy = getattr(self.trainer, "strategy", None)  # auto: where the model trains
        return strategy is not None and strategy.root_device.type != "cpu"

    def loader(self, dataset: Any, shuffle: bool = False) -> Any:
        if isinstance(dataset, ImageFiles):
            # training batches only: evaluate/predict feed the evaluation loaders to a trainer without this
            # datamodule (no `on_after_batch_transfer`), so those stay normalised on the CPU
            dataset.raw = shuffle and self.device_augmenting()
            dataset.batched = dataset.batchable and not self.pin_memory  # a finished batch would not be pinned
        return super().loader(dataset, shuffle)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A uint8 training batch on the device: augmented from its per-sample seeds, then normalised."""
        if self.device_pipeline is None or not isinstance(batch, list | tuple) or batch[0].dtype != torch.uint8:
            return batch
        x, y, *seeds = batch
        return [self.device_pipeline(x, seeds[0] if seeds else None), y]

    def decode_failures(self) -> dict[str, tuple[list[Path], int]]:
        """Per split: the files that failed to decode during loading, and the split's size (`data.cache=none`)."""
        return {name: (ds.failures(), len(ds)) for name, ds in self.datasets.items() if ds.cache is None}

    def report_skipped(self) -> None:
        if self.skipped:
            listing = "; ".join(f"{path} ({reason})" for path, reason in self.skipped)
            log.warning("skipped %d unreadable image file(s): %s", len(self.skipped), listing)

    def save_artifacts(self, run_dir: Path) -> None:
        """The resolved training pipeline, in albumentations' own format (reload with `A.load(path, 'yaml')`)."""
        import albumentations as A

        if self.spec is None:
            self.describe(*self.find_splits())
        run_dir.mkdir(parents=True, exist_ok=True)
        A.save(self.train_pipeline, str(run_dir / "augmentation.yaml"), data_format="yaml")
