"""The course's `cats_and_dogs_small/` built from a public archive of the Asirra cats-and-dogs photos.

Sources, recognised by their layout:
- Microsoft's `kagglecatsanddogs_5340.zip`: `PetImages/{Cat,Dog}/<n>.jpg`, downloaded when no source is given.
  It holds zero-byte files, JPEGs that do not decode and `Thumbs.db` files: each is skipped and counted,
  never copied (every chosen file is fully decoded with PIL first);
- the Kaggle competition's `train.zip`: `train/{cat,dog}.<n>.jpg` (Kaggle needs a login: pass it as source=).

Per class, the files are shuffled with `seed` and the first good ones fill train, validation and test in that
order (1000/500/500 as the notes), copied byte for byte as `cat.<n>.jpg` / `dog.<n>.jpg`. `manifest.csv` in the
tree lists split, class, source member and file name of every file; `prepare.json` the source, seed, counts
and skipped files. The tree is built beside its place and renamed when complete.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import warnings
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cnn_zoo.data.build import Prepared, atomic_folder
from cnn_zoo.data.download import Resource, fetch
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.progress import Stage, stage

log = logging.getLogger(__name__)

FOLDER = "cats_and_dogs_small"
CLASSES = ("cats", "dogs")
MICROSOFT = Resource(
    url="https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",
    filename="kagglecatsanddogs_5340.zip",
)
PETIMAGES = re.compile(r"(?:^|/)PetImages/(Cat|Dog)/([^/]+)$")
KAGGLE = re.compile(r"(?:^|/)train/(cat|dog)\.(\d+)\.(jpe?g)$", re.IGNORECASE)
JPEG = re.compile(r"^(\d+)\.jpe?g$", re.IGNORECASE)
SKIP_REASONS = ("zero_byte", "not_jpeg", "undecodable")


@dataclass(frozen=True)
class SplitSizes:
    """Images per class in each split (the notes: 1000 / 500 / 500)."""

    train: int = 1000
    validation: int = 500
    test: int = 500

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if int(value) < 1:
                raise CnnZooError(f"{name}={value}: every split needs at least one image per class")

    @property
    def per_class(self) -> int:
        return self.train + self.validation + self.test

    def split_of(self, rank: int) -> str:
        """The split of the rank-th good image of a class."""
        return "train" if rank < self.train else "validation" if rank < self.train + self.validation else "test"


@dataclass(frozen=True)
class Candidate:
    """One photo of the archive: its member name, class folder and the file name it gets in the tree."""

    member: str
    label: str
    number: int

    @property
    def file_name(self) -> str:
        return f"{self.label[:-1]}.{self.number}.jpg"


@dataclass
class Survey:
    """The archive's photos per class, and the members skipped before decoding (zero-byte, not a JPEG)."""

    layout: str
    candidates: dict[str, list[Candidate]]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def survey(archive: zipfile.ZipFile, path: Path) -> Survey:
    """Classify every member of `archive` by the two known layouts."""
    candidates: dict[str, list[Candidate]] = {name: [] for name in CLASSES}
    skipped: list[tuple[str, str]] = []
    layouts: Counter[str] = Counter()
    for info in archive.infolist():
        if info.is_dir():
            continue
        if match := PETIMAGES.search(info.filename):
            layouts["PetImages"] += 1
            label = "cats" if match.group(1) == "Cat" else "dogs"
            number = JPEG.match(match.group(2))
            if number is None:
                skipped.append((info.filename, "not_jpeg"))  # Thumbs.db and the like
                continue
            candidate = Candidate(info.filename, label, int(number.group(1)))
        elif match := KAGGLE.search(info.filename):
            layouts["Kaggle train"] += 1
            candidate = Candidate(info.filename, match.group(1).lower() + "s", int(match.group(2)))
        else:
            continue
        if info.file_size == 0:
            skipped.append((info.filename, "zero_byte"))
            continue
        candidates[candidate.label].append(candidate)
    if not layouts:
        raise CnnZooError(
            f"{path} holds neither PetImages/{{Cat,Dog}}/<n>.jpg (Microsoft's kagglecatsanddogs_5340.zip) nor "
            "train/{cat,dog}.<n>.jpg (Kaggle's train.zip); pass one of those as source="
        )
    for label in CLASSES:
        candidates[label].sort(key=lambda c: (c.number, c.member))  # the archive's order must not matter
    return Survey(layouts.most_common(1)[0][0], candidates, skipped)


def decodes(data: bytes) -> str | None:
    """None when PIL decodes the whole image, else why not (truncated, not an image, ...)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt EXIF warnings: the pixels are what matters
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        return None
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        return f"{type(err).__name__}: {' '.join(str(err).split())[:120]}"


def choose(
    archive: zipfile.ZipFile,
    candidates: list[Candidate],
    wanted: int,
    seed: int,
    progress: Stage | None = None,
    workers: int = 4,
) -> tuple[list[tuple[Candidate, bytes]], list[tuple[str, str]]]:
    """The first `wanted` decodable photos of one class in the seeded order, and the undecodable ones met
    (photos are decoded in batches until enough are good: bad files never reached are not counted)."""
    order = np.random.default_rng(seed).permutation(len(candidates))
    chosen: list[tuple[Candidate, bytes]] = []
    bad: list[tuple[str, str]] = []
    position = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while len(chosen) < wanted and position < len(order):
            batch = [candidates[i] for i in order[position : position + 2 * (wanted - len(chosen))]]
            position += len(batch)
            blobs = [archive.read(c.member) for c in batch]  # one reader: ZipFile is not thread-safe
            for candidate, blob, error in zip(batch, blobs, pool.map(decodes, blobs), strict=True):
                if error is not None:
                    bad.append((candidate.member, f"undecodable ({error})"))
                elif len(chosen) < wanted:
                    chosen.append((candidate, blob))
                    if progress is not None:
                        progress.update()
    return chosen, bad


def existing(final: Path) -> Prepared | None:
    """The tree when it is already there: made by prepare (manifest) or by hand (train/ folder)."""
    manifest = final / "manifest.csv"
    if manifest.is_file():
        return Prepared("catsdogs", final, False, f"{final} is already prepared ({manifest}); nothing to do")
    if (final / "train").is_dir():
        message = f"{final} already exists (not made by prepare); nothing to do (delete it to rebuild)"
        return Prepared("catsdogs", final, False, message)
    if final.exists():
        raise CnnZooError(f"{final} exists but holds no train/ folder; move it away and run again")
    return None


def prepare_catsdogs(
    data_dir: Path,
    source: Path | None,
    download_dir: Path,
    seed: int = 42,
    sizes: SplitSizes | None = None,
    url: str | None = None,
) -> Prepared:
    """`<data_dir>/cats_and_dogs_small/{train,validation,test}/{cats,dogs}/` from `source`, else downloaded
    (from `url`, default Microsoft's)."""
    sizes = sizes or SplitSizes()
    final = data_dir / FOLDER
    done = existing(final)
    if done is not None:
        return done
    started = time.perf_counter()
    resource = Resource(url, MICROSOFT.filename) if url else MICROSOFT
    path = source if source is not None else fetch(resource, download_dir)
    if not path.is_file():
        raise CnnZooError(f"source={path} not found; give the path of kagglecatsanddogs_5340.zip or Kaggle's train.zip")
    try:
        with zipfile.ZipFile(path) as archive:
            return build(archive, path, final, seed, sizes, started)
    except (zipfile.BadZipFile, OSError) as err:
        raise CnnZooError(f"cannot read {path} as a zip archive ({err}); download it again") from err


def build(
    archive: zipfile.ZipFile, path: Path, final: Path, seed: int, sizes: SplitSizes, started: float
) -> Prepared:
    found = survey(archive, path)
    rows: list[dict[str, str]] = []
    skipped = list(found.skipped)
    with atomic_folder(final) as work:
        for index, label in enumerate(CLASSES):
            with stage(f"choosing and checking {label}", sizes.per_class) as progress:
                chosen, bad = choose(archive, found.candidates[label], sizes.per_class, seed + index, progress)
            skipped += bad
            if len(chosen) < sizes.per_class:
                raise CnnZooError(
                    f"{path} has {len(chosen)} decodable {label} photos, fewer than the {sizes.per_class} asked "
                    f"(train={sizes.train} validation={sizes.validation} test={sizes.test}); ask for fewer"
                )
            for rank, (candidate, blob) in enumerate(chosen):
                split = sizes.split_of(rank)
                target = work / split / label / candidate.file_name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)
                rows.append({"split": split, "class": label, "source_member": candidate.member})
                rows[-1]["file_name"] = candidate.file_name
        pd.DataFrame(rows, columns=["split", "class", "source_member", "file_name"]).to_csv(
            work / "manifest.csv", index=False
        )
        counts = Counter(reason.split(" ")[0] for _, reason in skipped)
        record = {
            "source": str(path),
            "layout": found.layout,
            "seed": seed,
            "per_class": asdict(sizes),
            "skipped": {reason: counts.get(reason, 0) for reason in SKIP_REASONS},
            "skipped_files": [{"member": member, "reason": reason} for member, reason in skipped],
        }
        (work / "prepare.json").write_text(json.dumps(record, indent=2) + "\n")
    seconds = time.perf_counter() - started
    skipped_text = ", ".join(f"{counts.get(reason, 0)} {reason.replace('_', '-')}" for reason in SKIP_REASONS)
    return Prepared(
        "catsdogs",
        final,
        True,
        f"built {final} from {path.name} ({found.layout} layout, seed {seed}): {len(rows)} images "
        f"({sizes.train}/{sizes.validation}/{sizes.test} per class); skipped {len(skipped)} files "
        f"({skipped_text}) in {seconds:.1f} s",
    )
