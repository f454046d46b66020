"""The benchmark scripts' shared helpers (`scripts/bench_common.py`): table cells, the experiment-list/override
split, child processes timed with the CPU time the hypervisor stole, the order of the ways in a round."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pytest

from cnn_zoo.runtime import performance
from scripts.bench_common import (
    ProcessRun,
    markdown_table,
    mean_over_seeds,
    names_and_overrides,
    reported,
    run_process,
    way_order,
)


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


def test_child_reports_are_read_from_their_last_bench_line(tmp_path: Path) -> None:
    result = {"first_step": 5.0, "epochs": [[5.0, 7.0], [7.0, 8.5], [8.5, 10.5]], "test_acc": 0.75}
    code = f"print('noise'); print('BENCH ' + {json.dumps(json.dumps(result))})"
    run = run_process([sys.executable, "-c", code], tmp_path / "child.log")
    assert run.returncode == 0 and run.ended >= run.launched
    reported(run, (tmp_path / "child.log").read_text())
    assert run.test_acc == 0.75 and run.epoch_s == [2.0, 1.5, 2.0]
    assert run.steady_epoch_s == 1.75  # the first epoch's warm-up left out
    failed = run_process([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "failed.log")
    assert failed.returncode == 3 and reported(failed, "").epochs == []
    assert ProcessRun(0.0, 1.0, 0, 1.0, 1.0, epochs=[[0.0, 0.5]]).steady_epoch_s == 0.5
    with_cpu = ProcessRun(0.0, 1.0, 0, 1.0, 1.0, epochs=[[0.0, 0.5, 0.9], [0.5, 1.25, 0.7]])
    assert with_cpu.steady_epoch_cpu_s == 0.7 and with_cpu.epoch_s == [0.5, 0.75]


def test_a_child_run_records_the_time_the_hypervisor_stole_meanwhile(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  500 0 40 900 10 0 2 70 0 0\n")
    later = "cpu  900 0 60 950 10 0 3 320 0 0\n"  # 250 more ticks of steal while the child ran
    code = f"import time; time.sleep(0.6); open({str(stat)!r}, 'w').write({later!r}); time.sleep(0.6)"
    run = run_process([sys.executable, "-c", code], tmp_path / "c.log", stat=stat)
    assert run.returncode == 0 and run.steal_s == pytest.approx(250 / os.sysconf("SC_CLK_TCK"))
    assert len(run.steal) >= 3 and run.steal[0][1] == 0 and run.steal[-1][1] == pytest.approx(run.steal_s, abs=0.01)
    assert [t for t, _ in run.steal] == sorted(t for t, _ in run.steal) and run.cores == os.cpu_count()
    assert run_process([sys.executable, "-c", "pass"], tmp_path / "c.log", stat=tmp_path / "absent").steal_s is None
    assert performance.CpuTimes.read(stat) == performance.CpuTimes(idle=960, steal=320, total=2243)


def test_quiet_epochs_are_those_the_hypervisor_took_little_of() -> None:
    epochs = [[0.0, 5.0], [5.0, 10.0], [10.0, 20.0]]
    sampled = ProcessRun(0.0, 20.0, 0, 1.0, 1.0, epochs=epochs, steal=[[0.0, 0.0], [10.0, 0.1], [20.0, 4.1]], cores=2)
    assert sampled.steal_share(5.0, 10.0) == pytest.approx(0.05 / 10)  # half of the first 10 s's 0.1 core-seconds
    assert sampled.steal_share(10.0, 20.0) == pytest.approx(4.0 / 20)
    assert sampled.steady_epoch_s == 7.5 and sampled.quiet_epoch_s(0.02) == 5.0  # the stolen-from epoch left out
    assert sampled.quiet_epoch_s(0.001) is None
    averaged = ProcessRun(0.0, 20.0, 0, 1.0, 1.0, steal_s=2.0, epochs=epochs, cores=2)  # a total, no samples
    assert averaged.steal_share(10.0, 20.0) == pytest.approx(0.05) and averaged.quiet_epoch_s(0.06) == 7.5
    assert ProcessRun(0.0, 20.0, 0, 1.0, 1.0, epochs=epochs).quiet_epoch_s(1.0) is None  # steal unknown


def test_benchmark_rounds_reverse_the_order_every_other_round_unless_asked_not_to() -> None:
    ways = ["zoo", "plain", "keras"]
    assert [way_order(ways, r) for r in range(3)] == [ways, ways[::-1], ways]
    assert [way_order(ways, r, counterbalance=False) for r in range(2)] == [ways, ways]
    assert ways == ["zoo", "plain", "keras"]  # the caller's list is left as it was
