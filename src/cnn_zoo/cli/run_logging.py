"""What a command prints: every message once, no advertisement, no warning that asks nothing of the user.

Lightning gives its `lightning` logger a console handler of its own (`INFO: ...` on stderr) and lets its records
propagate to the root logger too, where Hydra's console and `train.log` handlers write them again: every line
twice. Its logger connector advertises a cloud service at every fit, and a few of its warnings concern Lightning
itself (a torch deprecation inside its own code) or are notes on choices cnn_zoo made on purpose. Called by the
entry points when a command's work starts, never at import.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings

# Matched against a message's start (`warnings.filterwarnings`): why each is nothing for the user to act on.
HARMLESS_WARNINGS = (
    # the summary's size estimate assumes 32-bit weights under bf16 autocast: the weights are 32-bit
    r"Precision bf16-mixed is not supported by the model summary",
    # torch 2.14 deprecated a pytree class Lightning's own code still tests against
    r".*isinstance\(treespec, LeafSpec\)",
    # a short epoch (a debug run, `trainer.limit_train_batches`) logs its steps at the epoch's end instead
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)
# Lightning's lines that tell nothing about the run (matched anywhere in the message).
DROPPED_LINES = (
    "try installing [litlogger]",  # an advertisement printed at every fit
    "Trainer already configured with model summary callbacks",  # cnn_zoo's own summary, configured on purpose
)


class DropLines(logging.Filter):
    """Drops records whose message contains one of `DROPPED_LINES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in DROPPED_LINES)


def tidy_output() -> None:
    """Lightning's lines once, through the root logger's handlers (Hydra's console and log file), without the
    advertisement; the warnings above silenced. Does nothing to logging where no root handler is configured."""
    import lightning  # noqa: F401  (its import adds the console handler this removes)

    for category in (UserWarning, FutureWarning, DeprecationWarning):
        for message in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
    root = logging.getLogger()
    if not root.handlers:
        return
    own = logging.getLogger("lightning")
    for handler in list(own.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            own.removeHandler(handler)
    for handler in root.handlers:
        if not any(isinstance(f, DropLines) for f in handler.filters):
            handler.addFilter(DropLines())


class RunLogFile(logging.FileHandler):
    """The run's `train.log` (conf/hydra/default.yaml): a write that fails for want of space stops the run.

    `logging`'s own handler prints a "--- Logging error ---" traceback to stderr at every record and the run goes
    on unlogged until the next checkpoint write fails. This one raises `cnn_zoo.runtime.faults.DiskFull` (the file, the
    bytes of the record, `resume=<run>`: one line, exit 2) at the first failed write and writes nothing after it.
    A failure in another thread (a DataLoader's pin-memory thread) is raised by the main thread's next record.
    Any other failure (a bad format string) keeps `logging`'s behaviour.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.failed: BaseException | None = None  # the disk-full error, once a write failed: nothing more is written
        self.pending: BaseException | None = None  # raised in the main thread

    def emit(self, record: logging.LogRecord) -> None:
        if self.pending is not None and threading.current_thread() is threading.main_thread():
            pending, self.pending = self.pending, None
            raise pending
        if self.failed is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        err = sys.exc_info()[1]
        from cnn_zoo.runtime.faults import DiskFull, full_disk_error  # only once a write failed: the module stays light

        if err is None or full_disk_error(err) is None:
            super().handleError(record)
            return
        self.failed = err
        try:  # the record's bytes, in the stream's own encoding ("locale" is only a name for open())
            needed = len((self.format(record) + self.terminator).encode(self.stream.encoding, "replace"))
        except (AttributeError, LookupError, TypeError, ValueError):
            needed = None
        full = DiskFull(self.baseFilename, needed, err)
        full.__cause__ = err
        if threading.current_thread() is not threading.main_thread():
            self.pending = full
            return
        raise full

    def flush(self) -> None:
        if self.failed is None:
            super().flush()

    def close(self) -> None:
        if self.failed is None:
            super().close()
            return
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()  # its unwritten bytes cannot be written: dropped
        logging.Handler.close(self)
