"""The one exception for a user's mistake, the guard that prints it as one line, and any exception as one line."""

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
