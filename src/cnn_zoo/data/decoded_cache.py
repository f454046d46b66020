"""Decoded images on disk, memory-mapped: a split is decoded once, then every run, trial and rank maps the file.

One cache is three files under `<cache_dir>/decoded_images/`: `<group>-<key>.u8`, the (N, H, W, C) uint8 rows in
the split's file order, `<group>-<key>.json`, its manifest (shape, the rows that did not decode), and
`<group>-<key>.files`, the files with their sizes and modification times (read only when rebuilding). `group`
names the folder, split and decode settings; `key` hashes the file list with each file's size and mtime and
those settings, so a changed, added or removed photo gives another key: the cache is rebuilt, decoding only the
files the previous cache of that group lacks (its unchanged rows are copied), and the previous one is removed.

Writing is atomic: rows go to `<name>.tmp-<pid>` (space reserved up front with `posix_fallocate`, so a full
disk is an `OSError` at once, never a `SIGBUS` in a mapped write), the file is renamed into place, then the
manifest is written and renamed; a cache is used only when its manifest is there and the data file has the
manifest's size, so an interrupted write is never read. Concurrent builders (DDP ranks, sweep trials) take
an exclusive `flock` on `<group>.lock`: one decodes, the others wait and then map what it wrote.

Rows are read with `pread` (`MappedImages`): the file's pages live in the kernel's page cache, shared by every
process that reads it, and are never counted in a process's resident memory, so that stays bounded whatever the
dataset's size. `MappedImages.array()` maps the whole file (np.frombuffer over a read-only mmap) where a view of
all rows is wanted; its pages are dropped from the process (`MADV_DONTNEED`) every `RELEASE_BYTES` copied.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnn_zoo.runtime.progress import track

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the file layout or the decoder's output changes
RELEASE_BYTES = 256 * 2**20  # drop this process's mapped pages after reading this much
SPACE_MARGIN = 64 * 2**20  # free space to leave on the cache's filesystem


class DiskFull(Exception):
    """No room for a cache file (the caller decodes on the fly instead)."""


@dataclass(frozen=True)
class Listing:
    """The files of one split with the stat facts the key is made of."""

    paths: list[str]
    sizes: list[int]
    mtimes: list[int]

    @classmethod
    def of(cls, paths: Sequence[str | Path]) -> Listing:
        """One `stat` per file (the size and mtime are the key: an edited photo must not map its old pixels)."""
        names = [path if isinstance(path, str) else str(path) for path in paths]
        stats = list(map(os.stat, names))
        return cls(names, [s.st_size for s in stats], [s.st_mtime_ns for s in stats])

    def entries(self) -> list[tuple[str, int, int]]:
        return list(zip(self.paths, self.sizes, self.mtimes, strict=True))


def digest(value: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


class MappedImages:
    """Rows `rows` of an (N, H, W, C) uint8 cache file, shared through the page cache by every process.

    `image[i]` reads row `rows[i]` with one `pread` into a fresh buffer: measured 6x faster than first-touch reads
    of a mapping (one page fault per 4 KB) and never counted in this process's resident memory. `array()` maps
    the whole file read-only (the rows of a previous cache are copied from it); its pages are dropped from this
    process every `RELEASE_BYTES` copied. Files are opened per process (DataLoader workers, spawned ones too).
    """

    def __init__(self, path: Path, shape: tuple[int, ...], rows: np.ndarray) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.row_bytes = int(np.prod(self.shape[1:]))
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._array: np.ndarray | None = None
        self._pid = -1
        self._read = 0

    def __getstate__(self) -> dict[str, Any]:  # spawned workers open their own file
        return {**self.__dict__, "_fd": -1, "_map": None, "_array": None, "_pid": -1, "_read": 0}

    def own(self) -> None:
        """Forget what a parent process opened (forked workers open their own)."""
        if self._pid != os.getpid():
            self._fd, self._map, self._array, self._pid, self._read = -1, None, None, os.getpid(), 0

    def array(self) -> np.ndarray:
        """The whole file as a read-only (N, H, W, C) array, mapped."""
        self.own()
        if self._array is None:
            with open(self.path, "rb") as file:
                self._map = mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ)
            self._array = np.frombuffer(self._map, dtype=np.uint8).reshape(self.shape)
        return self._array

    def __len__(self) -> int:
        return len(self.rows)

    def file(self) -> int:
        self.own()
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def __getitem__(self, index: int) -> np.ndarray:
        """A writable copy of image `index` (H, W, C)."""
        buffer = bytearray(self.row_bytes)
        if os.preadv(self.file(), [buffer], int(self.rows[index]) * self.row_bytes) != self.row_bytes:
            raise OSError(f"{self.path} is shorter than its manifest says: delete it to rebuild the cache")
        return np.frombuffer(buffer, dtype=np.uint8).reshape(self.shape[1:])

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        """Images `indices` as one (len, H, W, C) array: read in file order, the kernel told of all of them first.

        The `WILLNEED` hints start reading every row not in the page cache at once (a cache larger than the
        machine's memory, or pages evicted since), so those reads overlap instead of queueing one by one.
        """
        fd = self.file()
        out = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        offsets = self.rows[np.asarray(indices, dtype=np.int64)] * self.row_bytes
        order = np.argsort(offsets, kind="stable").tolist()
        offsets = offsets.tolist()
        if hasattr(os, "posix_fadvise"):
            for i in order:
                os.posix_fadvise(fd, offsets[i], self.row_bytes, os.POSIX_FADV_WILLNEED)
        flat = out.reshape(len(indices), self.row_bytes)
        for i in order:
            if os.preadv(fd, [flat[i]], offsets[i]) != self.row_bytes:
                raise OSError(f"{self.path} is shorter than its manifest says: delete it to rebuild the cache")
        return out

    def copy_row(self, row: int) -> np.ndarray:
        """Row `row` of the file itself (not of `rows`), through the mapping."""
        image = self.array()[row]
        self._read += self.row_bytes
        if self._read >= RELEASE_BYTES:
            self.release()
        return image

    def release(self) -> None:
        """Drop this process's resident pages of the mapping (they stay in the page cache)."""
        self._read = 0
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)


class DecodedCache:
    """The cache files of one (folder, split, decode settings) group; `open_or_build` is the one entry point."""

    def __init__(self, cache_dir: Path, group: dict[str, Any], image_shape: tuple[int, int, int]) -> None:
        self.folder = Path(cache_dir) / "decoded_images"
        self.group = group
        self.image_shape = tuple(image_shape)
        self.prefix = f"{group.get('split', 'split')}-{digest({'format': FORMAT, **group}, 12)}"

    def paths(self, key: str) -> tuple[Path, Path]:
        name = self.folder / f"{self.prefix}-{key}"
        return name.with_suffix(".u8"), name.with_suffix(".json")

    def files_path(self, key: str) -> Path:
        """The (path, size, mtime) of every row: read only to reuse rows when the cache is rebuilt."""
        return self.folder / f"{self.prefix}-{key}.files"

    def key(self, listing: Listing) -> str:
        return digest({"format": FORMAT, **self.group, "shape": self.image_shape, "files": listing.entries()})

    def complete(self, key: str) -> dict[str, Any] | None:
        """The manifest of the cache `key` when both files are whole, else None."""
        data, manifest = self.paths(key)
        try:
            meta = json.loads(manifest.read_text())
            if meta.get("key") == key and data.stat().st_size == int(np.prod(meta["shape"])):
                return meta
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def open_or_build(
        self, listing: Listing, decode: Callable[[str], np.ndarray], workers: int, desc: str
    ) -> tuple[MappedImages, list[tuple[int, str]], bool]:
        """The mapped cache of `listing` (decoded now when missing), the (row, reason) of rows that did not
        decode, and whether this call decoded it. Raises `DiskFull` when there is no room for it."""
        key = self.key(listing)
        meta = self.complete(key)
        built = False
        if meta is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self.lock():
                meta = self.complete(key)  # another process may have built it while this one waited
                if meta is None:
                    meta = self.build(key, listing, decode, workers, desc)
                    built = True
        bad = [(int(row), str(reason)) for row, reason in meta["bad"]]
        rows = np.delete(np.arange(len(listing.paths), dtype=np.int64), [row for row, _ in bad])
        return MappedImages(self.paths(key)[0], tuple(meta["shape"]), rows), bad, built

    def lock(self) -> Any:
        """An exclusive `flock` on this group's lock file (released when the block ends, or the process dies)."""
        folder, prefix = self.folder, self.prefix

        class Lock:
            def __enter__(self) -> None:
                self.file = open(folder / f"{prefix}.lock", "a+")  # noqa: SIM115 - held for the block
                try:
                    fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("waiting for another process decoding %s into the cache ...", prefix)
                    started = time.perf_counter()
                    fcntl.flock(self.file, fcntl.LOCK_EX)
                    log.info("the other process finished the cache in %.1f s", time.perf_counter() - started)

            def __exit__(self, *exc: Any) -> None:
                fcntl.flock(self.file, fcntl.LOCK_UN)
                self.file.close()

        return Lock()

    def previous(self) -> tuple[MappedImages, dict[tuple[str, int, int], int], set[int]] | None:
        """The newest complete cache of this group: its mapping, its rows by (path, size, mtime), its bad rows."""
        for manifest in sorted(self.folder.glob(f"{self.prefix}-*.json"), key=lambda p: p.stat().st_mtime):
            meta = self.complete(manifest.stem.rsplit("-", 1)[-1])
            if meta is not None and tuple(meta["shape"][1:]) == self.image_shape:
                try:
                    files = json.loads(self.files_path(meta["key"]).read_text())
                except (OSError, ValueError):
                    continue
                rows = {tuple(entry): row for row, entry in enumerate(files)}
                mapped = MappedImages(self.paths(meta["key"])[0], tuple(meta["shape"]), np.arange(meta["shape"][0]))
                return mapped, rows, {int(row) for row, _ in meta["bad"]}
        return None

    def build(
        self, key: str, listing: Listing, decode: Callable[[str], np.ndarray], workers: int, desc: str
    ) -> dict[str, Any]:
        """Decode `listing` into a new cache file (rows of an unchanged previous cache are copied instead)."""
        for stale in self.folder.glob(f"{self.prefix}-*.tmp-*"):  # left by a killed builder (the lock is ours)
            stale.unlink(missing_ok=True)
        data, manifest = self.paths(key)
        shape = (len(listing.paths), *self.image_shape)
        row_bytes = int(np.prod(self.image_shape))
        size = row_bytes * shape[0]
        free = shutil.disk_usage(self.folder).free
        if free < size + SPACE_MARGIN:
            raise DiskFull(f"{self.folder} has {free / 2**30:.1f} GiB free, the cache needs {size / 2**30:.1f} GiB")
        previous = self.previous()
        tmp = data.with_name(f"{data.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                os.posix_fallocate(fd, 0, max(size, 1))
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    raise DiskFull(f"no space left on {self.folder} for {size / 2**30:.1f} GiB") from err
                os.ftruncate(fd, size)  # a filesystem without fallocate: the free-space check above stands

            def work(row: int) -> str | None:
                entry = (listing.paths[row], listing.sizes[row], listing.mtimes[row])
                if previous is not None and entry in previous[1] and previous[1][entry] not in previous[2]:
                    image = np.array(previous[0].copy_row(previous[1][entry]))
                    reused[row] = True
                else:
                    try:
                        image = decode(listing.paths[row])
                    except Exception as err:  # PIL raises many types for bad files
                        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    if image.shape != self.image_shape:
                        return f"decoded to {image.shape}, not {self.image_shape}"
                os.pwrite(fd, np.ascontiguousarray(image, dtype=np.uint8).tobytes(), row * row_bytes)
                return None

            reused = np.zeros(shape[0], dtype=bool)
            if previous is not None:
                previous[0].array()  # mapped once, before the threads read it
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                errors = list(track(pool.map(work, range(shape[0])), desc, total=shape[0]))
            os.fsync(fd)
        except OSError as err:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"no space left on {self.folder} ({err.strerror})") from err
            raise
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        if reused.any():
            log.info("%s: %d of %d images reused from the previous cache", desc, int(reused.sum()), shape[0])
        meta = {
            "key": key,
            "format": FORMAT,
            "shape": list(shape),
            "group": self.group,
            "bad": [[row, error] for row, error in enumerate(errors) if error is not None],
        }
        os.replace(tmp, data)
        tmp_files = self.files_path(key).with_name(f"{self.files_path(key).name}.tmp-{os.getpid()}")
        tmp_files.write_text(json.dumps([list(entry) for entry in listing.entries()]))
        os.replace(tmp_files, self.files_path(key))
        tmp_manifest = manifest.with_name(f"{manifest.name}.tmp-{os.getpid()}")
        tmp_manifest.write_text(json.dumps(meta))
        os.replace(tmp_manifest, manifest)
        for old in self.folder.glob(f"{self.prefix}-*"):  # older versions of this group (mapped ones stay readable)
            if old not in (data, manifest, self.files_path(key)) and old.suffix in (".u8", ".json", ".files"):
                old.unlink(missing_ok=True)
        return meta
