"""Any exception as one line (`cnn_zoo.runtime.errors.one_line`): one formatter for commands, downloads, sweeps."""

from __future__ import annotations

import urllib.error

from cnn_zoo.runtime.errors import CnnZooError, one_line


def test_lines_are_joined_the_cause_bracketed_and_hints_dropped() -> None:
    try:
        try:
            raise ValueError("bad literal\nsecond line")
        except ValueError as cause:
            raise RuntimeError("Could not override 'x'.\n  Key 'x' is not in struct.\nSee https://hydra.cc") from cause
    except RuntimeError as err:
        assert one_line(err, named=False) == "Could not override 'x'; Key 'x' is not in struct (bad literal)"
        assert one_line(err).startswith("RuntimeError: Could not override 'x'; ")
    assert one_line(CnnZooError("bad value")) == "CnnZooError: bad value"
    assert one_line(RuntimeError()) == "RuntimeError"


def test_a_url_error_shows_its_reason_and_long_messages_are_cut() -> None:
    err = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    assert one_line(err) == "URLError: [Errno 111] Connection refused"
    text = one_line(OSError("x" * 500), limit=40)
    assert len(text) == 40 and text.endswith("...") and text.startswith("OSError: xxx")
