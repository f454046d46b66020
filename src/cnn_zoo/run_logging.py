"""What a command prints: every message once, no advertisement, no warning that asks nothing of the user.

Lightning gives its `lightning` logger a console handler of its own (`INFO: ...` on stderr) and lets its records
propagate to the root logger too, where Hydra's console and `train.log` handlers write them again: every line
twice. Its logger connector advertises a cloud service at every fit, and a few of its warnings concern Lightning
itself (a torch deprecation inside its own code) or are notes on choices cnn_zoo made on purpose. Called by the
entry points when a command's work starts, never at import.
"""

from __future__ import annotations

import logging
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
