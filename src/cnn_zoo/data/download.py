"""The one download helper: a progress bar, a `.part` file renamed only when complete, size and checksum checks.

Offline (or behind a firewall) a failed download is one actionable line: the URL, the file to place and where.
Downloaded archives live in the user's cache folder (`CNN_ZOO_CACHE_DIR`, else `$XDG_CACHE_HOME/cnn_zoo` or
`~/.cache/cnn_zoo`), never inside the installed package.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cnn_zoo.runtime.config_values import user_cache_dir
from cnn_zoo.runtime.errors import CnnZooError, one_line
from cnn_zoo.runtime.progress import stage

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """A file to fetch: where from, its name once stored, and what it must be (when published)."""

    url: str
    filename: str
    size: int | None = None  # bytes, when known
    checksum: str | None = None  # "<algorithm>:<hex digest>", e.g. "sha256:..." or "md5:..." (as published)

    def __post_init__(self) -> None:
        if self.checksum is not None:
            algorithm = self.checksum.partition(":")[0]
            if algorithm not in hashlib.algorithms_guaranteed:
                raise ValueError(f"unknown checksum algorithm in {self.checksum!r}")


def cache_root() -> Path:
    """Where downloads and other re-creatable files go (`cnn_zoo.runtime.config_values.user_cache_dir`), absolute."""
    return user_cache_dir().resolve()


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def problem(path: Path, resource: Resource) -> str | None:
    """Why the file at `path` is not `resource` (wrong size or checksum), or None when it is."""
    size = path.stat().st_size
    if resource.size is not None and size != resource.size:
        return f"it has {size:,} bytes, expected {resource.size:,}"
    if resource.checksum is not None:
        algorithm, _, expected = resource.checksum.partition(":")
        actual = file_digest(path, algorithm)
        if actual != expected.lower():
            return f"its {algorithm} is {actual}, expected {expected}"
    return None


def fetch(resource: Resource, folder: Path, option: str = "source", timeout: float = 60.0) -> Path:
    """`folder/<filename>`, downloaded unless a good copy is already there; a failure is one actionable line
    (naming `option`, the prepare option that takes a local copy instead)."""
    target = folder / resource.filename
    try:
        return download(resource, folder, timeout)
    except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, timeouts, short reads, bad URLs
        raise CnnZooError(
            f"cannot download {resource.url} ({one_line(err, limit=160)}); "
            f"download it yourself and place it at {target} "
            f"(or pass {option}=<path to it>), then run the same command again"
        ) from err


def download(resource: Resource, folder: Path, timeout: float = 60.0) -> Path:
    """`folder/<filename>`, downloaded unless a good copy is already there; returns its path.

    The bytes go to `<filename>.part`, renamed when the size and checksum are right: an interrupted or damaged
    download never looks complete. Network and file errors propagate (OSError, HTTPException): see `fetch`.
    """
    target = folder / resource.filename
    if target.is_file():
        reason = problem(target, resource)
        if reason is None:
            log.info("using %s (already downloaded)", target)
            return target
        log.warning("downloading %s again: %s", target, reason)
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        transfer(resource.url, partial, timeout)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    reason = problem(partial, resource)
    if reason is not None:
        partial.unlink()
        raise CnnZooError(
            f"the download of {resource.url} is damaged ({reason}); run again, or place a good copy at {target}"
        )
    partial.replace(target)
    log.info("downloaded %s", target)
    return target


def transfer(url: str, partial: Path, timeout: float) -> None:
    """Stream `url` into `partial` with a progress bar; a short read (fewer bytes than announced) is an error."""
    request = urllib.request.Request(url, headers={"User-Agent": "cnn_zoo"})
    with urllib.request.urlopen(request, timeout=timeout) as response, partial.open("wb") as out:
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced and announced.isdigit() else None
        with stage(f"downloading {url.rsplit('/', 1)[-1]}", total, unit="B") as progress:
            while block := response.read(CHUNK):
                out.write(block)
                progress.update(len(block))
    received = partial.stat().st_size
    if total is not None and received != total:
        raise OSError(f"connection closed after {received:,} of {total:,} bytes")

