"""The benchmark scripts' shared helpers: table cells and the experiment-list/override split."""

from __future__ import annotations

import argparse

import pytest

from cnn_zoo.benchmark import markdown_table, names_and_overrides


def test_table_prints_fractions_to_four_places_and_durations_to_tenths() -> None:
    table = markdown_table(
        [{"name": "a", "test acc": 0.88661, "s/epoch": 0.4, "total": 12.34}], ["name", "test acc", "s/epoch", "total"]
    )
    assert table.splitlines() == [
        "| name | test acc | s/epoch | total |",
        "|---|---|---|---|",
        "| a | 0.8866 | 0.4 | 12.3 |",
    ]


def test_overrides_swallowed_by_the_experiment_list_are_handed_back() -> None:
    parser = argparse.ArgumentParser()
    names, overrides = names_and_overrides(parser, ["a", "x=1", "b"], ["y=2"], ["a", "b"])
    assert names == ["a", "b"] and overrides == ["x=1", "y=2"]
    with pytest.raises(SystemExit):
        names_and_overrides(parser, ["a", "c"], [], ["a", "b"])
