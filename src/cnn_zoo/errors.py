"""The one exception for a user's mistake, and the guard that prints it as one line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class CnnZooError(Exception):
    """A user's mistake (missing data, bad file, bad value): what, where and how to fix, in one line.

    Entry points print it without a traceback; tracebacks are kept for bugs.
    """


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `CnnZooError` raised inside the block into `error: <message>` on stderr and exit status 2."""
    try:
        yield
    except CnnZooError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
