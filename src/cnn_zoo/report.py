"""`cnn-zoo-report <run or sweep folder>`: the folder's `report.html`, and the notes' figures with a table.

`report.html` is the page training and evaluate write at their end (`cnn_zoo.reporting.run_page`) or, for a sweep
folder, the page of all its jobs (`cnn_zoo.reporting.sweep_page`); this command writes it again, for a run that was
interrupted, an older run folder, or a sweep still going. Beside it, from the TensorBoard event files the runs
logged (tensorboard's `EventAccumulator`): for each run `accuracy.png` and `loss.png` (training and validation per
epoch), and for the folder `report.md`, one table row per run (a sweep gives one per job).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnn_zoo.runtime.errors import CnnZooError, user_errors

log = logging.getLogger(__name__)

EVENT_GLOB = "events.out.tfevents.*"
# (figure, y label, training tag, validation tag): the per-epoch series Lightning logs for the Classifier
CURVES = (
    ("accuracy", "accuracy", "train/acc_epoch", "val/acc"),
    ("loss", "loss", "train/loss_epoch", "val/loss"),
)
TEST_TAGS = ("test/acc", "test/loss", "test/acc_tta")


@dataclass
class RunHistory:
    """One run's per-epoch series: tag -> [(epoch (1-based), value)], and its last test scalars."""

    name: str
    log_dir: Path
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return max((points[-1][0] for points in self.series.values() if points), default=0)


def find_log_dirs(folder: Path) -> list[Path]:
    """Folders holding event files under `folder` (each is one TensorBoard run), in a stable order."""
    return sorted({p.parent for p in folder.rglob(EVENT_GLOB)}, key=lambda p: [int_or_text(s) for s in p.parts])


def int_or_text(part: str) -> tuple[int, int | str]:
    """Sort `10` after `9` (sweep job folders are numbers)."""
    return (0, int(part)) if part.isdigit() else (1, part)


def run_name(folder: Path, log_dir: Path) -> str:
    """The run folder relative to the folder asked about: the run's own name for a run, the job's for a sweep."""
    run_dir = log_dir.parent if log_dir.name == "tensorboard" else log_dir
    return run_dir.relative_to(folder).as_posix() if run_dir != folder else folder.name


def load_history(folder: Path, log_dir: Path) -> RunHistory:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags().get("scalars", []))
    epoch_at: dict[int, int] = {}
    if "epoch" in tags:
        for event in accumulator.Scalars("epoch"):  # the test stage logs a later epoch at its own step
            epoch_at[event.step] = min(epoch_at.get(event.step, int(event.value)), int(event.value))
    history = RunHistory(run_name(folder, log_dir), log_dir)
    for _, _, *curve_tags in CURVES:
        for tag in curve_tags:
            if tag not in tags:
                continue
            events = accumulator.Scalars(tag)
            history.series[tag] = [(epoch_at.get(e.step, index) + 1, float(e.value)) for index, e in enumerate(events)]
    for tag in TEST_TAGS:
        if tag in tags:
            history.test[tag] = float(accumulator.Scalars(tag)[-1].value)
    return history


def plot_curve(history: RunHistory, ylabel: str, train_tag: str, val_tag: str, path: Path) -> bool:
    """The notes' figure: training as dots, validation as a line, per epoch. False when nothing to draw."""
    train, val = history.series.get(train_tag, []), history.series.get(val_tag, [])
    if not train and not val:
        return False
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train, strict=True), "bo", label=f"Training {ylabel}")
    if val:
        ax.plot(*zip(*val, strict=True), "b-s", label=f"Validation {ylabel}")  # markers: one epoch shows
    ax.set_title(f"Training and validation {ylabel} — {history.name}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return True


def best(points: list[tuple[int, float]], largest: bool) -> tuple[int, float] | None:
    if not points:
        return None
    return (max if largest else min)(points, key=lambda p: p[1])


def fmt(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def table(histories: Sequence[RunHistory]) -> list[str]:
    header = ["run", "epochs", "best val acc (epoch)", "min val loss (epoch)", "final train acc", "final val acc"]
    header += list(TEST_TAGS)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for h in histories:
        val_acc, val_loss = best(h.series.get("val/acc", []), True), best(h.series.get("val/loss", []), False)
        train_acc, last_val = h.series.get("train/acc_epoch", []), h.series.get("val/acc", [])
        cells = [
            h.name,
            str(h.epochs),
            f"{fmt(val_acc[1])} ({val_acc[0]})" if val_acc else "",
            f"{fmt(val_loss[1])} ({val_loss[0]})" if val_loss else "",
            fmt(train_acc[-1][1]) if train_acc else "",
            fmt(last_val[-1][1]) if last_val else "",
        ]
        cells += [fmt(h.test.get(tag)) for tag in TEST_TAGS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report(folder: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the figures and `report.md` for a run or sweep folder; returns the markdown file."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise CnnZooError(f"report: {folder} is not a folder; give a run folder (outputs/runs/...) or a sweep folder")
    log_dirs = find_log_dirs(folder)
    if not log_dirs:
        raise CnnZooError(
            f"report: no TensorBoard event files ({EVENT_GLOB}) under {folder}; "
            "point to a run or sweep folder trained with logger=tensorboard (the default)"
        )
    out = Path(out_dir).expanduser().resolve() if out_dir else folder / "report"
    histories = [load_history(folder, d) for d in log_dirs]
    lines = [f"# Report: {folder.name}", "", *table(histories)]
    for h in histories:
        alone = h.log_dir.parent == folder or h.log_dir == folder  # the folder is this run, not a sweep of runs
        figure_dir = out if alone else out / h.name.replace("/", "_")
        drawn = [
            name
            for name, ylabel, train_tag, val_tag in CURVES
            if plot_curve(h, ylabel, train_tag, val_tag, figure_dir / f"{name}.png")
        ]
        if drawn:
            heading = "" if alone else f"## {h.name}\n\n"
            images = " ".join(f"![{n}]({(figure_dir / f'{n}.png').relative_to(out).as_posix()})" for n in drawn)
            lines += ["", heading + images]
    path = out / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_page(folder: str | Path) -> Path:
    """`<folder>/report.html`: for a sweep folder (job folders, `sweep.json` or `multirun.yaml`) the sweep page and
    each job's run page, else the run page."""
    from cnn_zoo.reporting.run_page import is_run_folder, write_page, write_run_page
    from cnn_zoo.reporting.sweep_page import is_sweep_folder, write_sweep_page_or_raise
    from cnn_zoo.search.sweeps import collect_jobs

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise CnnZooError(f"report: {folder} is not a folder; give a run folder (outputs/runs/...) or a sweep folder")
    if is_sweep_folder(folder):
        for job in collect_jobs(folder):  # each job's own page first: the sweep page links to them
            if is_run_folder(folder / job["folder"]):
                write_run_page(folder / job["folder"])
        return write_sweep_page_or_raise(folder)
    if is_run_folder(folder):
        return write_page(folder)
    raise CnnZooError(
        f"report: no run or sweep in {folder} (no metrics.json, run.json, .hydra/, TensorBoard event files "
        f"({EVENT_GLOB}) or job folders); point to a run folder (outputs/runs/...) or a sweep folder"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cnn-zoo-report", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a run folder (outputs/runs/<run>) or a sweep folder (outputs/multiruns/<t>)")
    parser.add_argument("--out", default=None, help="folder of the figures and report.md (default <folder>/report)")
    args = parser.parse_args(argv)
    with user_errors():
        page = write_page(args.folder)
        print(f"report: {page}")
        if find_log_dirs(page.parent):
            print(f"report: {report(args.folder, args.out)}")


if __name__ == "__main__":
    main()
