"""NASA SMAP/MSL telemetry CSVs built from telemanom's `data.zip` and `labeled_anomalies.csv` (Hundman et al. 2018).

Input: `data/{train,test}/<channel>.npy`, arrays (time steps, 25): column 0 the telemetry value, the others
one-hot command bits; `labeled_anomalies.csv`: `chan_id, spacecraft, anomaly_sequences, class, num_values`.
Output, `<data_dir>/telemetry/`: `{SMAP,MSL}/<channel>_{train,test}.csv`, `labeled_anomalies.csv`, `index.csv`.

The rules, read off the development copy (every one of its 80 channels and its index agree with them):
- a column constant on the *train* split is dropped from both splits (the dev files keep columns that are
  constant on test only, and none constant on train); a channel left with no column is skipped;
- every kept column is min-max scaled with the train split's range: (x - min) / (max - min + 1e-4), so the
  train values lie in [0, 1) and command bits read 0 / 0.9999; test values may fall outside;
- column names f0..fN in the original order (f0 the telemetry value), then `label`: 0 nominal, 1 point,
  2 contextual; intervals `[start, end]` include their end; train rows are all nominal;
- a channel listed twice (SMAP P-2) is labelled by its last row, and `index.csv` has one line per listed row;
- values written with 6 significant digits (`%g`).
"""

from __future__ import annotations

import ast
import io
import logging
import re
import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cnn_zoo.data.build import Prepared, atomic_folder
from cnn_zoo.data.download import Resource, fetch
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.progress import track

log = logging.getLogger(__name__)

FOLDER = "telemetry"
DATA = Resource(url="https://s3-us-west-2.amazonaws.com/telemanom/data.zip", filename="telemanom_data.zip")
LABELS = Resource(
    url="https://raw.githubusercontent.com/khundman/telemanom/master/labeled_anomalies.csv",
    filename="labeled_anomalies.csv",
)
CLASS_LABELS = {"point": 1, "contextual": 2}
EPSILON = 1e-4  # added to the train range: constant-looking columns do not blow up, bits become 0.9999
LABEL_COLUMNS = ["chan_id", "spacecraft", "anomaly_sequences", "class", "num_values"]
INDEX_COLUMNS = [
    "chan_id",
    "spacecraft",
    "n_features",
    "n_train",
    "n_test",
    "test_nominal",
    "test_point",
    "test_contextual",
    "label_mismatch_vs_repo",
    "note",
]
COUNT_COLUMNS = INDEX_COLUMNS[3:9]
MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)\.npy$")


@dataclass(frozen=True)
class Anomalies:
    """One row of `labeled_anomalies.csv`: a channel's expert-labelled anomaly intervals and their classes."""

    chan_id: str
    spacecraft: str
    intervals: tuple[tuple[int, int], ...]
    classes: tuple[str, ...]
    num_values: int

    def labels(self, length: int, end_inclusive: bool = True) -> np.ndarray:
        """One label per test row: 0 nominal, 1 point, 2 contextual."""
        labels = np.zeros(length, dtype=np.int64)
        for (start, end), name in zip(self.intervals, self.classes, strict=True):
            labels[start : end + 1 if end_inclusive else end] = CLASS_LABELS[name]
        return labels


def parse_row(row: pd.Series, where: str) -> Anomalies:
    try:
        intervals = tuple((int(a), int(b)) for a, b in ast.literal_eval(str(row["anomaly_sequences"])))
        classes = tuple(name.strip() for name in str(row["class"]).strip("[] ").split(","))
        if len(intervals) != len(classes) or not set(classes) <= set(CLASS_LABELS):
            raise ValueError(f"{len(intervals)} intervals, classes {list(classes)}")
        return Anomalies(str(row["chan_id"]), str(row["spacecraft"]), intervals, classes, int(row["num_values"]))
    except (ValueError, SyntaxError, TypeError) as err:
        raise CnnZooError(
            f"{where}: row of channel {row.get('chan_id')!r} is not `[[start, end], ...]` with classes "
            f"point|contextual ({err}); use telemanom's original labeled_anomalies.csv"
        ) from err


def read_anomalies(path: Path) -> list[Anomalies]:
    """Every row of `labeled_anomalies.csv`, in file order."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CnnZooError(f"cannot read {path} as CSV ({err}); use telemanom's labeled_anomalies.csv") from err
    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise CnnZooError(f"{path} lacks columns {missing} (has {list(frame.columns)}); use telemanom's original")
    return [parse_row(row, str(path)) for _, row in frame.iterrows()]


def convert(train: np.ndarray, test: np.ndarray, labels: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The train and test tables of one channel, or None when every column is constant on train."""
    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise CnnZooError(f"channel arrays have shapes {train.shape} and {test.shape}; expected (steps, columns) each")
    low, high = train.min(axis=0), train.max(axis=0)
    kept = np.flatnonzero(high > low)
    if not len(kept):
        return None
    names = [f"f{i}" for i in range(len(kept))]

    def table(values: np.ndarray, label: np.ndarray) -> pd.DataFrame:
        scaled = (values[:, kept] - low[kept]) / (high[kept] - low[kept] + EPSILON)
        frame = pd.DataFrame(scaled, columns=names)
        frame["label"] = label
        return frame

    return table(train, np.zeros(len(train), np.int64)), table(test, labels)


def index_frame(rows: list[Anomalies], shapes: dict[str, tuple[int, int, int]], notes: dict[str, str]) -> pd.DataFrame:
    """`index.csv`: one line per row of labeled_anomalies.csv, in its order.

    shapes: channel -> (features, train rows, test rows) of the CSVs written; notes: channel -> why it was skipped.
    Class counts use the row's own intervals (ends included). `label_mismatch_vs_repo`: test rows whose label
    differs from the end-exclusive reading of the channel's first listed row (telemanom's own `[start, end)` use;
    the first-versus-second P-2 row difference shows there).
    """
    first: dict[str, Anomalies] = {}
    lines = []
    for row in rows:
        first.setdefault(row.chan_id, row)
        if row.chan_id not in shapes:
            note = notes.get(row.chan_id)
            lines.append({"chan_id": row.chan_id, "spacecraft": row.spacecraft, "n_features": 0, "note": note})
            continue
        n_features, n_train, n_test = shapes[row.chan_id]
        labels = row.labels(n_test)
        counts = np.bincount(labels, minlength=3)
        mismatch = int((labels != first[row.chan_id].labels(n_test, end_inclusive=False)).sum())
        lines.append(
            {
                "chan_id": row.chan_id,
                "spacecraft": row.spacecraft,
                "n_features": n_features,
                "n_train": n_train,
                "n_test": n_test,
                "test_nominal": counts[0],
                "test_point": counts[1],
                "test_contextual": counts[2],
                "label_mismatch_vs_repo": mismatch,
            }
        )
    frame = pd.DataFrame(lines, columns=INDEX_COLUMNS)
    frame[COUNT_COLUMNS] = frame[COUNT_COLUMNS].astype(float)  # as the dev index: blank for skipped channels
    frame["n_features"] = frame["n_features"].astype(int)
    return frame


def npy_members(archive: zipfile.ZipFile) -> dict[tuple[str, str], str]:
    """(split, channel) -> member name of every `.npy` under train/ or test/."""
    members = {}
    for name in archive.namelist():
        if match := MEMBER.search(name):
            members[(match.group(1), match.group(2))] = name
    return members


def load_npy(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(archive.read(member)), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise CnnZooError(f"cannot read {member} in the telemanom archive ({err}); download data.zip again") from err


def prepare_telemetry(data_dir: Path, source: Path | None, labels: Path | None, download_dir: Path) -> Prepared:
    """`<data_dir>/telemetry/` from `source` (telemanom's data.zip) and `labels` (else both downloaded)."""
    final = data_dir / FOLDER
    if (final / "index.csv").is_file():
        message = f"{final} is already prepared ({final / 'index.csv'}); nothing to do"
        return Prepared("telemetry", final, False, message)
    labels_path = labels if labels is not None else fetch(LABELS, download_dir, option="labels")
    archive_path = source if source is not None else fetch(DATA, download_dir)
    for name, path, what in (("labels", labels_path, "labeled_anomalies.csv"), ("source", archive_path, "data.zip")):
        if not path.is_file():
            raise CnnZooError(f"{name}={path} not found; give the path of telemanom's {what}")
    rows = read_anomalies(labels_path)
    last = {row.chan_id: row for row in rows}  # a channel listed twice takes its last row, as the dev files
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise CnnZooError(f"cannot read {archive_path} as a zip archive ({err}); download data.zip again") from err
    shapes: dict[str, tuple[int, int, int]] = {}
    notes: dict[str, str] = {}
    with archive, atomic_folder(final) as work:
        members = npy_members(archive)
        if not members:
            raise CnnZooError(f"{archive_path} holds no data/{{train,test}}/<channel>.npy; use telemanom's data.zip")
        for chan, row in track(list(last.items()), "converting telemetry channels", unit="channels"):
            if ("train", chan) not in members or ("test", chan) not in members:
                notes[chan] = "not in data.zip; skipped"
                continue
            train = load_npy(archive, members[("train", chan)])
            test = load_npy(archive, members[("test", chan)])
            tables = convert(train, test, row.labels(len(test)))
            if tables is None:
                notes[chan] = "all columns constant; skipped"
                continue
            folder = work / row.spacecraft
            folder.mkdir(exist_ok=True)
            for split, table in zip(("train", "test"), tables, strict=True):
                table.to_csv(folder / f"{chan}_{split}.csv", index=False, float_format="%g")
            shapes[chan] = (tables[0].shape[1] - 1, len(tables[0]), len(tables[1]))
        shutil.copyfile(labels_path, work / "labeled_anomalies.csv")
        index_frame(rows, shapes, notes).to_csv(work / "index.csv", index=False)
    skipped = ", ".join(f"{chan} ({note})" for chan, note in notes.items()) or "none"
    craft = Counter(last[chan].spacecraft for chan in shapes)
    return Prepared(
        "telemetry",
        final,
        True,
        f"built {final}: {len(shapes)} channels ({craft['SMAP']} SMAP, {craft['MSL']} MSL); skipped: {skipped}",
    )
