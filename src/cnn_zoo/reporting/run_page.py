"""`<run>/report.html`: one page a person opens after a training or evaluate run.

Everything comes from the files the run left (nothing is re-run): `.hydra/` (what was asked), `run.json` and
`network.txt` (`cnn_zoo.reporting.run_record`), the TensorBoard event files (curves), `metrics.json`,
`confusion_matrix.json`, `top_losses.png` / `.md` and `most_confused.md` (`cnn_zoo.callbacks.inspection.TopLosses`),
`data.json` and the checkpoints. A missing file leaves its section out, so the page also works for a run that
stopped early or an older run folder. The figures are PNG data URIs: the page is one self-contained file.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape

from cnn_zoo.reporting import figures
from cnn_zoo.runtime.faults import DiskFull, full_disk_error, writing

log = logging.getLogger(__name__)

PAGE = "report.html"
EVENT_GLOB = "events.out.tfevents.*"
TEMPLATES = Path(__file__).resolve().parent / "templates"
EXPORT_SUFFIXES = (".onnx", ".pt", ".ts")
Points = list[tuple[int, float]]


# ----------------------------------------------------------------- reading a run folder
def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def log_dirs(folder: Path) -> list[Path]:
    return sorted({p.parent for p in folder.rglob(EVENT_GLOB)})


def read_scalars(folder: Path) -> tuple[dict[str, Points], dict[str, float]]:
    """Per-epoch series (tag -> [(epoch, value)], 1-based, the last value of an epoch kept) and the last test
    scalars, from the event files under `folder/tensorboard` (or anywhere under `folder`)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = folder / "tensorboard"
    dirs = log_dirs(board) if board.is_dir() else []
    series: dict[str, dict[int, float]] = {}
    test: dict[str, float] = {}
    for log_dir in dirs[:1]:
        accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
        quiet = logging.getLogger("tensorboard")  # its directory watcher logs every file it opens at INFO
        level = quiet.level
        quiet.setLevel(max(level, logging.WARNING))
        try:
            accumulator.Reload()
        finally:
            quiet.setLevel(level)
        tags = set(accumulator.Tags().get("scalars", []))
        epoch_at: dict[int, int] = {}
        for event in accumulator.Scalars("epoch") if "epoch" in tags else []:
            epoch_at[event.step] = min(epoch_at.get(event.step, int(event.value)), int(event.value))
        for tag in sorted(tags - {"epoch"}):
            events = accumulator.Scalars(tag)
            if tag.startswith("test/"):
                test[tag] = float(events[-1].value)
            elif tag.startswith("lr-"):  # logged at each epoch's start, where no `epoch` scalar is
                series[tag] = {index + 1: float(e.value) for index, e in enumerate(events)}
            elif not tag.endswith("_step") and not tag.startswith(("final/", "hp_metric")):
                points: dict[int, float] = {}
                for index, event in enumerate(events):
                    points[epoch_at.get(event.step, index) + 1] = float(event.value)
                series[tag] = points
    return {tag: sorted(points.items()) for tag, points in series.items()}, test


def markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first pipe table of a markdown file (what `TopLosses` writes) as header and rows."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        return [], []
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return cells[0], [row for row in cells[2:] if row]


def number(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else str(value)


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min {rest:02d} s"


def per_class(matrix: list[list[int]], names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of each class from the confusion matrix (rows true, columns predicted)."""
    rows = []
    for i, name in enumerate(names):
        true_positive = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = true_positive / predicted if predicted else float("nan")
        recall = true_positive / support if support else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if predicted and support and precision + recall else 0.0
        rows.append({"name": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows


@dataclass
class Monitor:
    """What the run's checkpoint callback optimised: the best epoch's definition."""

    metric: str = "val/acc"
    mode: str = "max"

    def best(self, points: Points) -> tuple[int, float] | None:
        clean = [p for p in points if not math.isnan(p[1])]
        if not clean:
            return None
        return (max if self.mode == "max" else min)(clean, key=lambda p: p[1])


def monitor_of(config: dict[str, Any]) -> Monitor:
    checkpoint = ((config.get("callbacks") or {}).get("model_checkpoint") or {}) if config else {}
    return Monitor(str(checkpoint.get("monitor") or "val/acc"), str(checkpoint.get("mode") or "max"))


@dataclass
class Section:
    """What the template shows of a run; empty fields leave their part out."""

    title: str
    folder: Path
    status: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    curves: str | None = None
    curves_note: str = ""
    best: str = ""
    test_rows: list[tuple[str, str, str]] = field(default_factory=list)
    other_metrics: list[tuple[str, str]] = field(default_factory=list)
    confusion: str | None = None
    confusion_title: str = ""
    classes: list[dict[str, Any]] = field(default_factory=list)
    top_losses_image: str | None = None
    top_losses_html: str = ""  # reviews with their words highlighted, written by cnn_zoo itself
    top_losses: tuple[list[str], list[list[str]]] = ([], [])
    confused: tuple[list[str], list[list[str]]] = ([], [])
    data_rows: list[list[str]] = field(default_factory=list)
    data_header: list[str] = field(default_factory=list)
    data_facts: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    network: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)


def hydra_facts(folder: Path) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The run's resolved config, Hydra's record (choices, job) and the command line's overrides."""
    config = read_yaml(folder / ".hydra" / "config.yaml") or {}
    hydra = (read_yaml(folder / ".hydra" / "hydra.yaml") or {}).get("hydra") or {}
    overrides = [str(o) for o in read_yaml(folder / ".hydra" / "overrides.yaml") or []]
    return config, hydra, overrides


def training_folder(config: dict[str, Any]) -> Path | None:
    """An evaluate run's training run: the folder above the checkpoint's `checkpoints/`, when it has curves."""
    ckpt = config.get("ckpt_path")
    if not ckpt:
        return None
    parent = Path(str(ckpt)).expanduser().parent
    folder = parent.parent if parent.name == "checkpoints" else parent
    return folder if (folder / "tensorboard").is_dir() else None


def describe_run(folder: Path) -> Section:
    """Gather every part of the page for one run folder."""
    config, hydra, overrides = hydra_facts(folder)
    record = read_json(folder / "run.json") or {}
    metrics = read_json(folder / "metrics.json") or {}
    choices = hydra.get("runtime", {}).get("choices", {}) if hydra else {}
    command = record.get("command") or config.get("task_name") or "train"
    section = Section(title=folder.name, folder=folder, overrides=overrides)
    section.status = str(metrics.get("status") or "") or run_status(record, metrics)
    section.facts = what_ran(command, choices, config, record)

    curves_from = folder if (folder / "tensorboard").is_dir() else training_folder(config)
    if curves_from is not None:
        series, logged_test = read_scalars(curves_from)
        if curves_from != folder:
            section.curves_note = f"curves of the training run {curves_from}"
        add_curves(section, series, monitor_of(read_yaml(curves_from / ".hydra" / "config.yaml") or config))
    add_metrics(section, metrics)
    add_confusion(section, folder)
    add_top_losses(section, folder)
    add_data(section, folder)
    network = folder / "network.txt"
    section.network = network.read_text() if network.is_file() else ""
    section.links = links(folder)
    return section


def run_status(record: dict[str, Any], metrics: dict[str, Any]) -> str:
    """`finished` once metrics.json is written (training and evaluate write it last), else still going or cut off."""
    if metrics:
        return "finished"
    return "interrupted or running (no metrics.json yet)"


def what_ran(
    command: str, choices: dict[str, Any], config: dict[str, Any], record: dict[str, Any]
) -> list[tuple[str, str]]:
    machine = record.get("machine") or {}
    versions = record.get("versions") or {}
    epochs = record.get("epochs") or []
    facts = [("command", f"cnn-zoo-{command}")]
    for group in ("experiment", "data", "model", "optimizer", "scheduler", "augmentation", "tta"):
        value = choices.get(group)
        if value not in (None, "none") or group in ("data", "model"):
            facts.append((group, str(value) if value is not None else "from the checkpoint"))
    if config.get("ckpt_path"):
        facts.append(("checkpoint", str(config["ckpt_path"])))
    if versions:
        facts.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    if record:
        facts.append(("git commit", str(record.get("git_commit") or "none (not run from a git checkout)")))
    if machine:
        where = machine.get("cpu", "")
        if machine.get("cpu_cores"):
            where += f" ({machine['cpu_cores']} cores)"
        if machine.get("gpu"):
            where += f"; GPU {machine['gpu']}"
        facts.append(("machine", where))
        devices = f"{machine.get('accelerator', '')} x{machine.get('devices', 1)}"
        facts.append(("precision", f"{machine.get('precision', '')} on {devices}"))
    if record.get("started"):
        facts.append(
            (
                "started",
                str(record["started"])
                + (f" (resumed {', '.join(record['resumed'])})" if record.get("resumed") else ""),
            )
        )
    if record.get("duration_seconds") is not None:
        facts.append(("duration", seconds_text(float(record["duration_seconds"]))))
    if epochs:
        seconds = [float(e["seconds"]) for e in epochs]
        facts.append(("epochs", str(len(epochs))))
        mean = sum(seconds) / len(seconds)
        text = f"{mean:.2f} s (mean of {len(seconds)})"
        if len(seconds) > 1:
            text += f"; first {seconds[0]:.2f} s, last {seconds[-1]:.2f} s"
        facts.append(("seconds per epoch", text))
        validation = [float(e["validation_seconds"]) for e in epochs if e.get("validation_seconds") is not None]
        if validation:
            facts.append(("validation per epoch", f"{sum(validation) / len(validation):.2f} s (mean, in the above)"))
        rates = [float(e["samples_per_second"]) for e in epochs if e.get("samples_per_second")]
        if rates:
            text = f"{sum(rates) / len(rates):.1f} (mean over epochs, validation time left out)"
            facts.append(("training samples per second", text))
    if record.get("test_seconds") is not None:
        facts.append(("test", f"{seconds_text(float(record['test_seconds']))} on {record.get('tested', '')}"))
    return facts


def add_curves(section: Section, series: dict[str, Points], monitor: Monitor) -> None:
    metric = "acc"
    if monitor.metric.startswith("val/") and monitor.metric not in ("val/loss", "val/acc"):
        metric = monitor.metric.removeprefix("val/")
    best = monitor.best(series.get(monitor.metric, []))
    fig = figures.curves_figure(series, metric, best[0] if best else None, monitor.metric)
    if fig is not None:
        section.curves = figures.data_uri(fig)
    if best is not None:
        section.best = f"best epoch {best[0]}: {monitor.metric} = {best[1]:.4f} ({monitor.mode})"


def add_metrics(section: Section, metrics: dict[str, Any]) -> None:
    """Test metrics with their TTA counterpart in the next column; the other numbers below."""
    names = sorted({k.removesuffix("_tta") for k in metrics if k.startswith("test/")})
    section.test_rows = [
        (name.removeprefix("test/"), number(metrics.get(name)), number(metrics.get(f"{name}_tta"))) for name in names
    ]
    section.other_metrics = [
        (k, number(v)) for k, v in sorted(metrics.items()) if not k.startswith("test/") and isinstance(v, int | float)
    ]


def add_confusion(section: Section, folder: Path) -> None:
    content = read_json(folder / "confusion_matrix.json")
    if not content or not content.get("matrix"):
        return
    matrix = [[int(c) for c in row] for row in content["matrix"]]
    names = [str(n) for n in content.get("class_names") or range(len(matrix))]
    tested = content.get("tested")
    section.confusion_title = f"test set ({tested})" if tested else "test set"
    section.confusion = figures.data_uri(figures.confusion_figure(matrix, names, section.confusion_title))
    section.classes = [
        {**row, **{k: number(row[k]) for k in ("precision", "recall", "f1")}} for row in per_class(matrix, names)
    ]


def add_top_losses(section: Section, folder: Path) -> None:
    image = folder / "top_losses.png"
    if image.is_file():
        section.top_losses_image = figures.png_uri(image.read_bytes())
    reviews = folder / "top_losses.html"  # `TopLosses.write_reviews`: escaped words in coloured spans
    if reviews.is_file():
        section.top_losses_html = reviews.read_text(encoding="utf-8")
    for name, slot in (("top_losses.md", "top_losses"), ("most_confused.md", "confused")):
        path = folder / name
        if path.is_file():
            setattr(section, slot, markdown_table(path.read_text()))


def add_data(section: Section, folder: Path) -> None:
    """Counts per split (and per class where the datamodule reports them), and the files it skipped."""
    stored = read_json(folder / "data.json") or {}
    spec = data_spec(stored)
    names = [str(n) for n in (spec.class_names if spec else stored.get("class_names") or [])]
    # a flat data.json of an early run that no spec can be read from: its counts by key, as it wrote them
    sizes = spec.stats.split_sizes if spec else stored.get("split_sizes") or {}
    per_class_counts = spec.stats.split_class_counts if spec else stored.get("split_class_counts") or {}
    if sizes or per_class_counts:
        section.data_header = ["split", "samples", *names] if per_class_counts else ["split", "samples"]
        order = {"train": 0, "val": 1, "test": 2}
        for split in sorted(set(sizes) | set(per_class_counts), key=lambda s: (order.get(s, 3), s)):
            row = [split, str(sizes.get(split, sum(per_class_counts.get(split, []))))]
            if per_class_counts:
                counts = per_class_counts.get(split) or []
                row += [str(c) for c in counts] + [""] * (len(names) - len(counts))
            section.data_rows.append(row)
    if spec is not None:
        section.data_facts += [("kind", spec.kind), ("num_classes", str(spec.num_classes))]
        section.data_facts += [("input_shape", str(list(spec.input_shape))), *spec.data_kind.summary(spec)]
    if names and not per_class_counts:
        section.data_facts.append(("classes", ", ".join(names)))
    section.skipped = skipped_files(folder, stored)


def data_spec(stored: dict[str, Any]) -> Any:
    """The `DataSpec` of `data.json`, whichever layout wrote it (the spec as checkpoints store it, or the flat
    facts of earlier runs), or None when there is none to read."""
    from cnn_zoo.data.spec import DataSpec

    if not stored:
        return None
    try:
        return DataSpec.from_dict(stored)
    except Exception:  # noqa: BLE001  (a page shows what it can: an unreadable spec leaves the counts out)
        return None


def skipped_files(folder: Path, facts: dict[str, Any]) -> list[str]:
    """What the datamodule skipped and why: its warnings in the run's log (`skipped N unreadable ...`)."""
    lines = []
    for key in ("skipped", "skipped_files"):
        if facts.get(key):
            lines.append(f"{key}: {facts[key]}")
    for log_file in sorted(folder.glob("*.log")):
        try:
            text = log_file.read_text(errors="replace")
        except OSError:
            continue
        lines += [line.split("] - ", 1)[-1] for line in text.splitlines() if "skipped" in line and "WARNING" in line]
    return lines


def links(folder: Path) -> list[tuple[str, str]]:
    """Checkpoints, exports and the run's other files, as paths relative to the page."""
    found = sorted((folder / "checkpoints").glob("*.ckpt")) if (folder / "checkpoints").is_dir() else []
    found += sorted(p for p in folder.rglob("*") if p.suffix in EXPORT_SUFFIXES and p.is_file())
    found += [folder / n for n in ("metrics.json", "data.json", "run.json", "confusion_matrix.json")]
    found += sorted(folder.glob("*.log"))
    if (folder / "tensorboard").is_dir():
        found.append(folder / "tensorboard")
    rows = []
    for path in found:
        if path.exists():
            relative = path.relative_to(folder).as_posix()
            size = f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "folder (tensorboard --logdir)"
            rows.append((relative, size))
    return rows


# ----------------------------------------------------------------- writing
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = number
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def write_run_page(folder: str | Path) -> Path | None:
    """(Re)write `<folder>/report.html`; a failure is logged, never raised: the run's results are already saved."""
    folder = Path(folder)
    try:
        return write_page(folder)
    except DiskFull:
        raise  # a full disk stops the run like any other write (cnn_zoo.runtime.faults): the next files would fail too
    except Exception as err:  # the page is a view of finished work: it must not fail the run it shows
        if isinstance(err, OSError) and full_disk_error(err) is not None:
            raise DiskFull(folder / PAGE, None, err) from err
        log.warning("report.html not written: %s: %s", type(err).__name__, err)
        return None


def write_page(folder: Path) -> Path:
    section = describe_run(folder)
    text = render("run.html.j2", run=section)
    path = folder / PAGE
    tmp = folder / f".{PAGE}.tmp"
    try:
        with writing(path, len(text.encode())):
            tmp.write_text(text, encoding="utf-8")
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    log.info("run page: %s", path)
    return path


def is_run_folder(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("metrics.json", "run.json", ".hydra/config.yaml", "tensorboard"))
