"""The one exception for a user's mistake, the guard that prints it as one line, any exception as one line, and
the exit statuses.

Exit statuses of every cnn_zoo command (docs/faults.md lists what the user sees for each):

- 0: done.
- 1: a bug (a traceback; please report it).
- 2: a user's mistake or a fault of the machine the user can fix: bad input, a full disk, out of memory, a killed
  DataLoader worker (`CnnZooError`, one `error:` line).
- 3: training diverged (`cnn_zoo.callbacks.divergence`): a non-finite or spiking loss; the run stopped, its last finite
  checkpoint kept.
- 128 + the signal's number (130 SIGINT, 138 SIGUSR1, 143 SIGTERM): stopped by a signal after saving a checkpoint
  to resume from (`cnn_zoo.callbacks.stop_signals`), the status a shell reports for a process that signal ended.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_SIGNAL_BASE = 128


class CnnZooError(Exception):
    """A user's mistake (missing data, bad file, bad value): what, where and how to fix, in one line.

    Entry points print it without a traceback; tracebacks are kept for bugs. `exit_status` is the command's exit
    status (subclasses for the faults a long run meets set their own).
    """

    exit_status: int = EXIT_USER_ERROR


def user_error_in(err: BaseException) -> CnnZooError | None:
    """The user's mistake behind `err`: `err` itself, or the cause of an OmegaConf interpolation error.

    A resolver's `CnnZooError` (`fast=maybe` in `${fast_precision:...}`) reaches the code as OmegaConf's
    `InterpolationResolutionError`; a bad interpolation of the user's own (`${oc.env:UNSET}`) is a mistake too.
    """
    if isinstance(err, CnnZooError):
        return err
    from omegaconf.errors import InterpolationResolutionError

    if not isinstance(err, InterpolationResolutionError):
        return None
    cause: BaseException | None = err.__cause__ or err.__context__
    while cause is not None and not isinstance(cause, CnnZooError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        return cause
    key = getattr(err, "full_key", None)
    message = (str(err).strip().splitlines() or [type(err).__name__])[0]  # OmegaConf adds full_key: lines
    return CnnZooError(f"bad config value{f' at {key}' if key else ''}: {message}")


def global_rank() -> int:
    """This process's rank in a distributed (DDP) run: Lightning's, once Lightning is loaded; 0 otherwise."""
    module = sys.modules.get("lightning.fabric.utilities.rank_zero")
    rank = getattr(getattr(module, "rank_zero_only", None), "rank", 0) if module is not None else 0
    return int(rank or 0)


def say(line: str, agreed: bool = False) -> None:
    """Print the command's one line on stderr. Under DDP every rank meets a fault the ranks agree on (divergence,
    a stop signal: `agreed`) at the same step: rank zero says it, the other ranks only log it to their own log
    file; any other fault of another rank is printed with its rank, as it may be the only word of it."""
    rank = global_rank()
    if rank == 0:
        print(line, file=sys.stderr)
        return
    import logging

    record = logging.LogRecord(__name__, logging.ERROR, __file__, 0, "%s", (line,), None)
    for handler in logging.getLogger().handlers:  # its log file only: rank zero's line is the console's
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    if not agreed:
        print(f"{line.split(': ', 1)[0]}: (rank {rank}) {line.split(': ', 1)[-1]}", file=sys.stderr)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `CnnZooError` raised inside the block into `error: <message>` on stderr and its exit status (2)."""
    try:
        yield
    except Exception as err:
        mistake = user_error_in(err)
        if mistake is None:
            raise
        say(f"error: {mistake}", agreed=mistake.exit_status == EXIT_DIVERGED)
        raise SystemExit(mistake.exit_status) from None


def one_line(err: BaseException, *, named: bool = True, limit: int = 300) -> str:
    """`err` as one line, for an `error:` message or a summary cell: its lines joined by `; ` (Hydra's "See
    https://..." hints dropped), the cause's first line in brackets, `<Type>: ` in front unless `named=False`
    (a message that already says what failed), cut at `limit` characters.

    urllib's `URLError` keeps what went wrong in `reason`; that is the text shown.
    """
    reason = getattr(err, "reason", None)
    source = reason if isinstance(reason, BaseException | str) and str(reason).strip() else err
    lines = [" ".join(line.split()).rstrip(".") for line in str(source).splitlines() if line.strip()]
    text = "; ".join(line for line in lines if not line.startswith("See https://"))
    cause = err.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip().splitlines()[0] not in text:
        text += f" ({str(cause).strip().splitlines()[0]})"
    if named:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
