"""The benchmark scripts' shared helpers: table cells and the experiment-list/override split."""

from __future__ import annotations

import argparse

import pytest
from scripts.bench_common import markdown_table, mean_over_seeds, names_and_overrides


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


def test_mean_over_seeds_averages_each_group_and_lists_the_first_metric_per_seed() -> None:
    rows = [
        {"channel": "c", "model": "conv1d", "seed": 1, "f1": 0.5, "acc": 0.9},
        {"channel": "c", "model": "logreg", "seed": 1, "f1": 0.4, "acc": 0.8},
        {"channel": "c", "model": "conv1d", "seed": 2, "f1": 0.3, "acc": 0.7},
    ]
    summary = mean_over_seeds(rows, ["channel", "model"], ["f1", "acc"])
    assert summary == [
        {"channel": "c", "model": "conv1d", "seeds": 2, "f1": 0.4, "acc": 0.8, "f1 per seed": "0.500 0.300"},
        {"channel": "c", "model": "logreg", "seeds": 1, "f1": 0.4, "acc": 0.8, "f1 per seed": "0.400"},
    ]
