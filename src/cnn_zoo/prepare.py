"""`cnn-zoo-prepare <dataset> [key=value ...]`: put a dataset where the experiments read it, one command each.

The data folder is `data_dir=`, else `CNN_ZOO_DATA_DIR`, else `./data`; downloaded archives go to the cache
folder (`cache_dir=`, else `CNN_ZOO_CACHE_DIR`, else the user's cache folder), never into the package. A local
archive (`source=`) is used as it is: nothing is downloaded. Re-running on a prepared folder does nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnn_zoo.data.build import Prepared
from cnn_zoo.data.download import cache_root
from cnn_zoo.runtime.errors import CnnZooError, user_errors

log = logging.getLogger("cnn_zoo.prepare")


@dataclass(frozen=True)
class Options:
    """The parsed key=value options of one command (the ones a dataset does not take are refused)."""

    data_dir: Path
    download_dir: Path
    values: dict[str, str]

    def path(self, key: str) -> Path | None:
        value = self.values.get(key)
        return Path(value).expanduser().resolve() if value else None

    def integer(self, key: str, default: int) -> int:
        value = self.values.get(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise CnnZooError(f"{key}={value!r} is not an integer; e.g. {key}={default}") from None


def prepare_mnist(options: Options) -> Prepared:
    from cnn_zoo.data.mnist import MNISTDataModule, missing_raw_files

    datamodule = MNISTDataModule(data_dir=str(options.data_dir), download=True)
    if not missing_raw_files(datamodule.raw_dir):
        return Prepared("mnist", datamodule.raw_dir, False, f"{datamodule.raw_dir} is already prepared; nothing to do")
    datamodule.prepare_data()  # torchvision's download: its mirrors, progress bar and published MD5s
    return Prepared("mnist", datamodule.raw_dir, True, f"downloaded MNIST into {datamodule.raw_dir}")


def prepare_imdb(options: Options) -> Prepared:
    from cnn_zoo.data.imdb import IMDBDataModule

    datamodule = IMDBDataModule(data_dir=str(options.data_dir))
    for present in (datamodule.folder / "train", datamodule.archive):
        if present.exists():
            return Prepared("imdb", present, False, f"{present} is already there; nothing to do")
    source = options.path("source")
    if source is None:
        if options.values.get("url"):
            datamodule.url = options.values["url"]
        datamodule.fetch_archive()  # the datamodule's own download (progress bar, .part file, MD5)
        return Prepared("imdb", datamodule.archive, True, f"downloaded {datamodule.archive}")
    if not source.is_file():
        raise CnnZooError(f"source={source} not found; give the path of aclImdb_v1.tar.gz")
    check_imdb_source(source)
    datamodule.archive.parent.mkdir(parents=True, exist_ok=True)
    partial = datamodule.archive.with_name(datamodule.archive.name + ".part")
    shutil.copyfile(source, partial)
    partial.replace(datamodule.archive)
    return Prepared("imdb", datamodule.archive, True, f"copied {source} to {datamodule.archive}")


def check_imdb_source(source: Path, members: int = 200) -> None:
    """A local `source=` checked as a download is: the official archive's published MD5, else at least a gzipped
    tar holding `aclImdb/{train,test}/{pos,neg}/*.txt` among its first `members` (a repackaged copy, such as one
    without `unsup/`, is used with a warning); anything else is refused before it is copied."""
    import tarfile

    from cnn_zoo.data.download import Resource, problem
    from cnn_zoo.data.imdb import ARCHIVE_MD5, REVIEW_MEMBER, URL

    mismatch = problem(source, Resource(URL, source.name, checksum=ARCHIVE_MD5))
    if mismatch is None:
        return
    try:
        with tarfile.open(source, "r|gz") as tar:
            first = (member.name for _, member in zip(range(members), tar, strict=False))
            found = next((name for name in first if REVIEW_MEMBER.match(name)), None)
    except (tarfile.TarError, OSError, EOFError) as err:
        found, mismatch = None, f"{mismatch}; and it is not a readable .tar.gz ({type(err).__name__}: {err})"
    if found is None:
        raise CnnZooError(
            f"source={source} is not the IMDB archive ({mismatch}); download the official aclImdb_v1.tar.gz "
            f"from {URL} and pass source=<its path>"
        )
    log.warning("source=%s is not the official archive (%s), but holds the aclImdb reviews: using it", source, mismatch)


def prepare_catsdogs(options: Options) -> Prepared:
    from cnn_zoo.data.catsdogs_source import SplitSizes, prepare_catsdogs

    defaults = SplitSizes()
    sizes = SplitSizes(*(options.integer(name, getattr(defaults, name)) for name in ("train", "validation", "test")))
    return prepare_catsdogs(
        options.data_dir,
        options.path("source"),
        options.download_dir,
        options.integer("seed", 42),
        sizes,
        options.values.get("url"),
    )


def prepare_telemetry(options: Options) -> Prepared:
    from cnn_zoo.data.telemanom import prepare_telemetry

    return prepare_telemetry(options.data_dir, options.path("source"), options.path("labels"), options.download_dir)


COMMON = {
    "data_dir": "where datasets live (default: CNN_ZOO_DATA_DIR, else ./data)",
    "cache_dir": "downloads go to <cache_dir>/downloads (default: CNN_ZOO_CACHE_DIR, else ~/.cache/cnn_zoo)",
}
DATASETS: dict[str, tuple[Callable[[Options], Prepared], str, dict[str, str]]] = {
    "mnist": (prepare_mnist, "<data_dir>/MNIST/raw/ (torchvision's download)", {}),
    "imdb": (
        prepare_imdb,
        "<data_dir>/aclImdb_v1.tar.gz (downloaded from Stanford, MD5 checked)",
        {
            "source": "a local aclImdb_v1.tar.gz, copied instead of downloading",
            "url": "where to download it from (default: Stanford's)",
        },
    ),
    "catsdogs": (
        prepare_catsdogs,
        "<data_dir>/cats_and_dogs_small/{train,validation,test}/{cats,dogs}/ (1000/500/500 per class)",
        {
            "source": "kagglecatsanddogs_5340.zip (PetImages/) or Kaggle's train.zip; default: download Microsoft's",
            "url": "where to download kagglecatsanddogs_5340.zip from (default: Microsoft)",
            "seed": "which photos go where (default 42)",
            "train": "images per class in train (1000)",
            "validation": "per class in validation (500)",
            "test": "per class in test (500)",
        },
    ),
    "telemetry": (
        prepare_telemetry,
        "<data_dir>/telemetry/{SMAP,MSL}/<channel>_{train,test}.csv, index.csv (NASA telemanom)",
        {
            "source": "telemanom's data.zip (default: download it)",
            "labels": "telemanom's labeled_anomalies.csv (default: download it)",
        },
    ),
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """argparse's mistakes as ours: one line, exit 2."""
        print(f"error: {message}; see cnn-zoo-prepare --help", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    lines = []
    for name, (_, makes, options) in DATASETS.items():
        lines.append(f"  {name:<10} {makes}")
        lines += [f"      {key + '=':<12}{text}" for key, text in options.items()]
    lines.append("options of every dataset:")
    lines += [f"      {key + '=':<12}{text}" for key, text in COMMON.items()]
    return Parser(
        prog="cnn-zoo-prepare",
        description="Download or build a dataset in the layout the experiments read; re-running does nothing.",
        epilog="datasets:\n" + "\n".join(lines) + "\n\nexample: cnn-zoo-prepare catsdogs source=PetImages.zip seed=42",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def parse_options(dataset: str, pairs: list[str]) -> Options:
    allowed = {**DATASETS[dataset][2], **COMMON}
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CnnZooError(f"{pair!r} is not key=value; options of {dataset}: {', '.join(allowed)}")
        if key not in allowed:
            raise CnnZooError(f"unknown option {key!r} for {dataset}; its options: {', '.join(allowed)}")
        values[key] = value
    data_dir = values.get("data_dir") or os.environ.get("CNN_ZOO_DATA_DIR") or "data"
    cache = Path(values["cache_dir"]).expanduser().resolve() if values.get("cache_dir") else cache_root()
    return Options(Path(data_dir).expanduser().resolve(), cache / "downloads", values)


def run(dataset: str, pairs: list[str]) -> Prepared:
    """Prepare `dataset` with `key=value` options (the entry point's work, without the argument parsing)."""
    if dataset not in DATASETS:
        raise CnnZooError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[dataset][0](parse_options(dataset, pairs))


def main(argv: list[str] | None = None) -> None:
    """`cnn-zoo-prepare` / `python -m cnn_zoo.prepare`: one summary line on stdout; a user's mistake exits 2."""
    args_parser = parser()
    args_parser.add_argument("dataset", help=", ".join(DATASETS))
    args_parser.add_argument("options", nargs="*", default=[], metavar="key=value")
    args = args_parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with user_errors():
        print(run(args.dataset, args.options).summary)


if __name__ == "__main__":
    main()
