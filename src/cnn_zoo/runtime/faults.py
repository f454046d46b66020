"""The faults a long run meets, each turned into one line that says what happened and what to do.

`run_faults(cfg)` wraps a training command (`cnn_zoo.train`); what it does with each fault (docs/faults.md):

- `Diverged` (`cnn_zoo.callbacks.divergence`): `metrics.json` gets `"status": "diverged"` beside the metrics so far,
  then the one line, exit status 3.
- A full disk (an `OSError` such as ENOSPC or EDQUOT anywhere in the chain, from a checkpoint, a log, a
  TensorBoard event file or metrics.json): the file, the free space, the size needed and `resume=<run folder>`;
  exit status 2. Checkpoints are written through a temporary file (`cnn_zoo.callbacks.checkpointing`), so the ones saved
  before are whole.
- Out of memory (CUDA's `torch.OutOfMemoryError`, `MemoryError`, the CPU allocator's "can't allocate memory"):
  the batch size, the device's memory and the fixes; exit status 2.
- A DataLoader worker killed (the kernel's OOM killer, a full /dev/shm): the worker count and what to try; exit 2.
- `Stopped` (`cnn_zoo.callbacks.stop_signals`) and Lightning's `SIGTERMException`: `stopped at epoch E, step S; continue
  with resume=<run>` and exit status 128 + the signal's number.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnn_zoo.runtime.atomic import write_atomic
from cnn_zoo.runtime.errors import EXIT_SIGNAL_BASE, CnnZooError

log = logging.getLogger(__name__)

# no space, over quota, over the file size limit; a read-only or failing disk gets the same one line
FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}
CPU_OUT_OF_MEMORY = ("DefaultCPUAllocator", "can't allocate memory", "not enough memory")
WORKER_KILLED = ("DataLoader worker", "exited unexpectedly", "is killed by signal")


class DiskFull(CnnZooError, OSError):
    """A write failed for want of space: raised where the file and its size are known (checkpoints).

    An `OSError` still (its errno, the file as its filename), for callers that catch those.
    """

    def __init__(self, path: str | Path, needed: int | None, cause: BaseException) -> None:
        found = full_disk_error(cause)
        code = found.errno if found is not None and found.errno else errno.ENOSPC
        OSError.__init__(self, code, os.strerror(code), str(path))
        self.path = Path(path)
        self.needed = needed


class Stopped(Exception):
    """A stop signal was honoured: a checkpoint to resume from is saved (`cnn_zoo.callbacks.stop_signals`)."""

    def __init__(self, signum: int, epoch: int, step: int, run_dir: str | Path, requeued: bool = False) -> None:
        self.signum, self.epoch, self.step, self.run_dir, self.requeued = signum, epoch, step, Path(run_dir), requeued
        import signal

        name = signal.Signals(signum).name
        then = "the job is requeued and continues there" if requeued else f"continue with resume={self.run_dir}"
        super().__init__(f"stopped at epoch {epoch}, step {step} ({name}); {then}")

    @property
    def exit_status(self) -> int:
        return EXIT_SIGNAL_BASE + self.signum


@contextmanager
def writing(path: str | Path, needed: int | None = None) -> Iterator[None]:
    """A full disk while writing `path` raised as `DiskFull` naming it and the bytes it needs (the `OSError` of
    a failed `write()` names no file)."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as err:
        if full_disk_error(err) is None:
            raise
        raise DiskFull(path, needed, err) from err


def write_json(output_dir: str | Path, name: str, content: Any) -> Path:
    """A run file (metrics.json, data.json ...) written whole or not at all; a full disk is the one line."""
    path = Path(output_dir) / name
    text = json.dumps(content, indent=2) + "\n"
    with writing(path, len(text.encode())):  # a full disk: one line naming the file; the previous file stays whole
        write_atomic(path, text)
    return path


def human_bytes(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def chain(err: BaseException) -> Iterator[BaseException]:
    """`err`, then its causes and contexts (torch's zip writer wraps the OSError in a RuntimeError)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def full_disk_error(err: BaseException) -> OSError | None:
    return next((e for e in chain(err) if isinstance(e, OSError) and e.errno in FULL_DISK), None)


def tensor_bytes(content: Any) -> int:
    """The bytes of every tensor in a (nested) checkpoint dict: about the size its file needs."""
    import torch

    if isinstance(content, torch.Tensor):
        return content.untyped_storage().nbytes() if content.device.type != "meta" else 0
    if isinstance(content, dict):
        return sum(tensor_bytes(v) for v in content.values())
    if isinstance(content, list | tuple):
        return sum(tensor_bytes(v) for v in content)
    return 0


def existing_folder(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def resume_advice(run_dir: Path) -> str:
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return f"free some space, then continue with resume={run_dir} (the checkpoints saved before are whole)"
    return f"free some space, then start the run again (it saved no checkpoint yet in {run_dir})"


def file_being_written(err: BaseException) -> Path | None:
    """The file a failed `write()` or `flush()` was writing, from its traceback: the `OSError` of a write names no
    file, but the innermost frame of a writer knows it (TensorBoard's `GFile.filename`, a handler's
    `baseFilename`, a file object's `name`, a `filename` or `path` argument)."""
    found: Path | None = None
    tb = err.__traceback__
    while tb is not None:  # outermost first: the innermost match wins
        names = tb.tb_frame.f_locals
        owner = names.get("self")
        for value in (
            getattr(owner, "baseFilename", None), getattr(owner, "filename", None), names.get("filename"),
            names.get("path"), getattr(owner, "name", None) if hasattr(owner, "write") else None,
        ):  # fmt: skip
            if isinstance(value, bytes):
                value = value.decode(errors="replace")
            if isinstance(value, str | Path) and os.path.isabs(str(value)):
                found = Path(value)
                break
        tb = tb.tb_next
    return found


def disk_full_message(err: BaseException, run_dir: Path) -> str:
    os_error = full_disk_error(err)
    path = getattr(err, "path", None) or (Path(os_error.filename) if os_error and os_error.filename else None)
    if path is None and os_error is not None:
        path = file_being_written(os_error)
    needed = getattr(err, "needed", None)
    where = existing_folder(path.parent if path else run_dir)
    free = shutil.disk_usage(where).free
    reason = os.strerror(os_error.errno) if os_error and os_error.errno else "write failed"
    file = str(path) if path else f"a file in {run_dir} (a log or TensorBoard event file)"
    size = f", {human_bytes(needed)} needed" if needed else ""
    return f"{reason.lower()} writing {file} ({human_bytes(free)} free in {where}{size}); {resume_advice(run_dir)}"


def out_of_memory(err: BaseException) -> bool:
    import torch

    for e in chain(err):
        if isinstance(e, torch.OutOfMemoryError | MemoryError):
            return True
        if isinstance(e, RuntimeError) and any(text in str(e) for text in CPU_OUT_OF_MEMORY):
            return True
    return False


def device_memory(cfg: DictConfig) -> str:
    """'cuda:0 (NVIDIA H100, 79.1 GB, 0.2 GB free)' or 'the CPU (31.2 GB of RAM, 2.0 GB available)'."""
    import torch

    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        index = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        return f"cuda:{index} ({name}, {human_bytes(total)}, {human_bytes(free)} free)"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    extra = f", {human_bytes(available)} available" if available is not None else ""
    return f"the CPU ({human_bytes(total)} of RAM{extra})"


def out_of_memory_message(cfg: DictConfig) -> str:
    batch = cfg.data.get("batch_size")
    accumulate = int(cfg.trainer.get("accumulate_grad_batches") or 1)
    precision = str(cfg.trainer.get("precision"))
    fixes = []
    if isinstance(batch, int) and batch > 1:
        half = max(1, batch // 2)
        fixes.append(f"data.batch_size={half}")
        same = f"trainer.accumulate_grad_batches={accumulate * 2}"
        fixes.append(f"data.batch_size={half} {same} (the same batch per optimizer step)")
    if "16" not in precision:
        fixes.append("trainer.precision=bf16-mixed (half the activation memory)")
    if int(cfg.data.get("num_workers") or 0) > 0:
        fixes.append("fewer data.num_workers=")
    return (
        f"out of memory on {device_memory(cfg)} at data.batch_size={batch} (precision {precision}); try "
        + ", or ".join(fixes)
    )


def worker_killed(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, RuntimeError) and WORKER_KILLED[0] in text and any(t in text for t in WORKER_KILLED[1:])


def worker_killed_message(err: BaseException, cfg: DictConfig) -> str:
    workers = cfg.data.get("num_workers")
    shm = ""
    if Path("/dev/shm").is_dir():
        shm = f"; /dev/shm has {human_bytes(shutil.disk_usage('/dev/shm').free)} free"
    first = str(err).strip().splitlines()[0].rstrip(". ")
    return (
        f"a DataLoader worker was lost ({first}) with data.num_workers={workers}: most often the kernel ended it "
        f"for want of memory, or its shared memory ran out{shm}; try data.num_workers=0 (or fewer workers), a smaller "
        "data.batch_size=, or more shared memory (docker run --shm-size=2g)"
    )


def record_divergence(err: Any) -> None:
    """`metrics.json` of the diverged run: its metrics so far, `"status": "diverged"` and the line."""
    if getattr(err, "write_to", None) is None:
        return
    values = {k: v for k, v in err.metrics.items() if v == v}  # NaN is not JSON: leave it out
    write_json(err.write_to, "metrics.json", {**values, "status": "diverged", "error": str(err)})


@contextmanager
def ending_other_ranks() -> Iterator[None]:
    try:
        yield
    except BaseException:
        end_other_ranks()
        raise


@contextmanager
def quiet_writer_threads() -> Iterator[None]:
    """A writer thread that dies of a full disk (TensorBoard's event writer) prints no traceback: the main thread
    raises the same error at its next write, and that becomes the one line. Every other thread error is printed
    as before. Set for the run only, by the command (never at import)."""
    import threading

    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and full_disk_error(args.exc_value) is not None:
            log.debug("thread %s: %s", getattr(args.thread, "name", "?"), args.exc_value)
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        if threading.excepthook is hook:
            threading.excepthook = previous


@contextmanager
def run_faults(cfg: DictConfig) -> Iterator[None]:
    """The faults of a training run, as one line each (see the module's docstring); everything else passes."""
    from cnn_zoo.callbacks.divergence import Diverged

    run_dir = Path(str(cfg.paths.output_dir)).resolve()
    try:
        with quiet_writer_threads(), ending_other_ranks():
            yield
    except Diverged as err:
        record_divergence(err)
        raise
    except Stopped as err:
        stop(str(err), err.exit_status)
    except CnnZooError as err:
        if full_disk_error(err) is None:
            raise
        raise CnnZooError(disk_full_message(err, run_dir)) from err
    except SystemExit as err:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(err, SIGTERMException):
            raise
        import signal

        stop(f"stopped by SIGTERM; continue with resume={run_dir}", EXIT_SIGNAL_BASE + signal.SIGTERM)
    except Exception as err:
        if full_disk_error(err) is not None:
            raise CnnZooError(disk_full_message(err, run_dir)) from err
        if out_of_memory(err):
            raise CnnZooError(out_of_memory_message(cfg)) from err
        if worker_killed(err):
            raise CnnZooError(worker_killed_message(err, cfg)) from err
        raise


def stop(message: str, status: int) -> None:
    from cnn_zoo.runtime.errors import global_rank, say

    if global_rank() == 0:
        log.warning("%s", message)
    say(message, agreed=True)
    raise SystemExit(status)


def ranks_will_stop() -> None:
    """Every rank stops at this step (an agreed fault): Lightning's watcher must not kill rank zero meanwhile."""
    if "cnn_zoo.runtime.distributed" in sys.modules:
        from cnn_zoo.runtime.distributed import expect_ranks_to_stop

        expect_ranks_to_stop()


def end_other_ranks() -> None:
    """After a fault, the DDP processes this one started are ended before it exits: none is left behind."""
    if "cnn_zoo.runtime.distributed" in sys.modules:
        from cnn_zoo.runtime.distributed import end_after_fault

        end_after_fault()
