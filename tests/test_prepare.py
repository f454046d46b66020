"""`cnn-zoo-prepare`: datasets built from archives in their real layouts, downloads, re-runs, one-line errors."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnn_zoo.data import catsdogs_source, telemanom
from cnn_zoo.data.download import Resource, fetch
from cnn_zoo.prepare import run
from cnn_zoo.runtime.errors import CnnZooError
from tests.conftest import require_real
from tests.fixtures_archives import channel_arrays, make_kaggle_zip, make_petimages_zip, make_telemanom

SMALL = ["train=3", "validation=2", "test=2"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def prepare_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, "CNN_ZOO_CACHE_DIR": str(cache), "CNN_ZOO_PROGRESS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "cnn_zoo.prepare", *args], capture_output=True, text=True, env=env, timeout=120
    )


def tree_files(root: Path) -> dict[str, list[str]]:
    return {
        f"{split}/{label}": sorted(p.name for p in (root / split / label).iterdir())
        for split in ("train", "validation", "test")
        for label in ("cats", "dogs")
    }


# ---------------------------------------------------------------------- catsdogs
def test_petimages_zip_through_the_command_skips_and_counts_bad_files(tmp_path: Path) -> None:
    archive = make_petimages_zip(tmp_path / "kagglecatsanddogs_5340.zip", per_class=8)
    data = tmp_path / "data"
    result = prepare_cli("catsdogs", f"source={archive}", f"data_dir={data}", "seed=1", *SMALL, cache=tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert "skipped 4 files (1 zero-byte, 2 not-jpeg, 1 undecodable)" in result.stdout
    root = data / "cats_and_dogs_small"
    files = tree_files(root)
    assert [len(files[k]) for k in files] == [3, 3, 2, 2, 2, 2]
    assert all(name.startswith(key.split("/")[1][:3] + ".") for key, names in files.items() for name in names)
    manifest = pd.read_csv(root / "manifest.csv")
    assert list(manifest.columns) == ["split", "class", "source_member", "file_name"]
    assert len(manifest) == 14 and manifest["file_name"].is_unique
    bad = {"PetImages/Cat/8.jpg", "PetImages/Dog/8.jpg", "PetImages/Cat/Thumbs.db", "PetImages/Dog/Thumbs.db"}
    assert not bad & set(manifest["source_member"])
    for row in manifest.itertuples():
        assert (root / row.split / row._2 / row.file_name).is_file()
    record = json.loads((root / "prepare.json").read_text())
    assert record["skipped"] == {"zero_byte": 1, "not_jpeg": 2, "undecodable": 1}
    assert record["layout"] == "PetImages" and record["seed"] == 1
    assert not list(data.glob(".cats_and_dogs_small.partial-*"))

    before = (root / "manifest.csv").stat().st_mtime_ns
    again = prepare_cli("catsdogs", f"source={archive}", f"data_dir={data}", cache=tmp_path / "c")
    assert again.returncode == 0 and "already prepared" in again.stdout and "nothing to do" in again.stdout
    assert (root / "manifest.csv").stat().st_mtime_ns == before and tree_files(root) == files


def test_the_same_seed_picks_the_same_photos_and_another_seed_others(tmp_path: Path) -> None:
    archive = make_petimages_zip(tmp_path / "pets.zip", per_class=12, bad_files=False)

    def manifest(name: str, seed: int) -> pd.DataFrame:
        run("catsdogs", [f"source={archive}", f"data_dir={tmp_path / name}", f"seed={seed}", *SMALL])
        return pd.read_csv(tmp_path / name / "cats_and_dogs_small" / "manifest.csv")

    first, same, other = manifest("a", 7), manifest("b", 7), manifest("c", 8)
    assert first.equals(same)
    assert not first.equals(other)


def test_kaggle_train_zip_layout(tmp_path: Path) -> None:
    archive = make_kaggle_zip(tmp_path / "train.zip", per_class=8)
    done = run("catsdogs", [f"source={archive}", f"data_dir={tmp_path / 'data'}", *SMALL])
    assert done.built and "Kaggle train layout" in done.summary and "skipped 0 files" in done.summary
    files = tree_files(done.folder)
    assert len(files["train/cats"]) == 3 and all(name.startswith("cat.") for name in files["train/cats"])
    assert len(files["test/dogs"]) == 2 and all(name.startswith("dog.") for name in files["test/dogs"])


def test_the_built_tree_is_what_data_catsdogs_reads(tmp_path: Path) -> None:
    from cnn_zoo.data.image_folder import ImageFolderDataModule

    archive = make_petimages_zip(tmp_path / "pets.zip", per_class=8)
    run("catsdogs", [f"source={archive}", f"data_dir={tmp_path / 'data'}", *SMALL])
    datamodule = ImageFolderDataModule(data_dir=str(tmp_path / "data"), image_size=32, num_workers=1)
    datamodule.setup("fit")
    assert list(datamodule.spec.class_names) == ["cats", "dogs"]
    assert datamodule.spec.stats.split_sizes == {"train": 6, "val": 4, "test": 4}
    assert not datamodule.skipped


def test_too_few_good_photos_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    archive = make_petimages_zip(tmp_path / "pets.zip", per_class=4)
    data = tmp_path / "data"
    with pytest.raises(CnnZooError, match=r"has 4 decodable cats photos, fewer than the 7 asked") as err:
        run("catsdogs", [f"source={archive}", f"data_dir={data}", *SMALL])
    assert "\n" not in str(err.value)
    assert not (data / "cats_and_dogs_small").exists()
    assert not list(data.glob(".cats_and_dogs_small.partial-*"))


def test_an_archive_of_another_layout_is_refused(tmp_path: Path) -> None:
    archive = make_kaggle_zip(tmp_path / "x.zip", per_class=2)
    import zipfile

    other = tmp_path / "other.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(other, "w") as out:
        for name in src.namelist():
            out.writestr(name.replace("train/", "images/"), src.read(name))
    with pytest.raises(CnnZooError, match=r"holds neither PetImages/\{Cat,Dog\}/<n>\.jpg"):
        run("catsdogs", [f"source={other}", f"data_dir={tmp_path / 'data'}"])


# ---------------------------------------------------------------------- command-line mistakes and failed downloads
def test_a_missing_source_through_the_command_is_one_line_exit_2(tmp_path: Path) -> None:
    result = prepare_cli("catsdogs", f"source={tmp_path / 'nope.zip'}", f"data_dir={tmp_path}", cache=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: source={tmp_path / 'nope.zip'} not found; "
                                                  "give the path of kagglecatsanddogs_5340.zip or Kaggle's train.zip"]
    for args in (["flowers"], ["catsdogs", "seed=x"], ["catsdogs", "colour=red"], []):
        bad = prepare_cli(*args, cache=tmp_path)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, (args, bad.stderr)
        assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_help_lists_every_dataset_and_its_options(tmp_path: Path) -> None:
    result = prepare_cli("--help", cache=tmp_path)
    assert result.returncode == 0
    for word in ("mnist", "imdb", "catsdogs", "telemetry", "source=", "seed=", "labels=", "data_dir=", "cache_dir="):
        assert word in result.stdout


def test_failed_download_names_the_url_the_file_to_place_and_where(tmp_path: Path, monkeypatch) -> None:
    url = (tmp_path / "offline" / "kagglecatsanddogs_5340.zip").as_uri()
    monkeypatch.setattr(catsdogs_source, "MICROSOFT", Resource(url, "kagglecatsanddogs_5340.zip"))
    with pytest.raises(CnnZooError) as err:
        run("catsdogs", [f"data_dir={tmp_path / 'data'}", f"cache_dir={tmp_path / 'cache'}"])
    message = str(err.value)
    assert "\n" not in message
    assert f"cannot download {url}" in message
    assert str(tmp_path / "cache" / "downloads" / "kagglecatsanddogs_5340.zip") in message
    assert not (tmp_path / "cache" / "downloads" / "kagglecatsanddogs_5340.zip.part").exists()
    assert not (tmp_path / "data" / "cats_and_dogs_small").exists()

    labels_url = (tmp_path / "offline" / "labeled_anomalies.csv").as_uri()
    monkeypatch.setattr(telemanom, "LABELS", Resource(labels_url, "labeled_anomalies.csv"))
    with pytest.raises(CnnZooError, match=rf"cannot download {labels_url} .*\(or pass labels=<path to it>\)"):
        run("telemetry", [f"data_dir={tmp_path / 'data'}", f"cache_dir={tmp_path / 'cache'}"])


# ---------------------------------------------------------------------- the download helper
class Server:
    """A local HTTP server on 127.0.0.1 serving `files` (name -> bytes); `short` names are cut off mid-body."""

    def __init__(self, files: dict[str, bytes], short: tuple[str, ...] = ()) -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                outer.hits.append(name)
                if name not in files:
                    self.send_error(404)
                    return
                body = files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in short else body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture
def server() -> Iterator[Server]:
    body = bytes(range(256)) * 4000
    instance = Server({"data.bin": body, "cut.bin": body}, short=("cut.bin",))
    instance.thread.start()
    yield instance
    instance.httpd.shutdown()
    instance.httpd.server_close()


def test_download_checks_size_and_sha256_and_renames_the_part_file(server: Server, tmp_path: Path) -> None:
    body = bytes(range(256)) * 4000
    good = Resource(server.url("data.bin"), "data.bin", len(body), "sha256:" + hashlib.sha256(body).hexdigest())
    path = fetch(good, tmp_path)
    assert path.read_bytes() == body and not (tmp_path / "data.bin.part").exists()
    fetch(good, tmp_path)
    assert server.hits == ["data.bin"]  # a good copy is not downloaded again

    wrong = Resource(server.url("data.bin"), "other.bin", checksum="sha256:" + "0" * 64)
    with pytest.raises(CnnZooError, match=r"is damaged \(its sha256 is [0-9a-f]{64}, expected 0{64}\)"):
        fetch(wrong, tmp_path)
    assert not (tmp_path / "other.bin").exists() and not (tmp_path / "other.bin.part").exists()


def test_a_cut_off_or_missing_download_leaves_no_file(server: Server, tmp_path: Path) -> None:
    for name in ("cut.bin", "absent.bin"):
        with pytest.raises(CnnZooError, match=rf"cannot download {server.url(name)} .*place it at {tmp_path / name}"):
            fetch(Resource(server.url(name), name), tmp_path)
        assert not (tmp_path / name).exists() and not (tmp_path / f"{name}.part").exists()


def test_file_url_and_md5(tmp_path: Path) -> None:
    source = tmp_path / "mirror" / "a.txt"
    source.parent.mkdir()
    source.write_bytes(b"hello")
    resource = Resource(source.as_uri(), "a.txt", 5, "md5:" + hashlib.md5(b"hello").hexdigest())
    assert fetch(resource, tmp_path / "out").read_bytes() == b"hello"


# ---------------------------------------------------------------------- telemetry
@pytest.fixture
def telemetry_built(tmp_path: Path) -> Path:
    archive, labels = make_telemanom(tmp_path / "telemanom")
    done = run("telemetry", [f"source={archive}", f"labels={labels}", f"data_dir={tmp_path / 'data'}"])
    assert done.built and "3 channels (2 SMAP, 1 MSL)" in done.summary
    assert "D-12 (all columns constant; skipped)" in done.summary and "X-9" not in done.summary
    return done.folder


def test_telemetry_columns_scaling_and_labels(telemetry_built: Path) -> None:
    train = pd.read_csv(telemetry_built / "SMAP" / "A-1_train.csv")
    test = pd.read_csv(telemetry_built / "SMAP" / "A-1_test.csv")
    # 6 columns in: col 2 (constant on train, not on test) and col 3 (constant) dropped
    assert list(train.columns) == list(test.columns) == ["f0", "f1", "f2", "f3", "label"]
    raw_train, raw_test = channel_arrays(80, 60, seed=0)
    low, high = raw_train[:, 0].min(), raw_train[:, 0].max()
    expected = (raw_test[:, 0] - low) / (high - low + 1e-4)
    np.testing.assert_allclose(test["f0"], expected, rtol=1e-5, atol=1e-6)
    assert train["f0"].min() == 0 and 0.999 < train["f0"].max() < 1
    assert test["f0"].max() > 1  # a test value above the train range
    assert set(train["f1"]) == {0.0, 0.9999}  # command bits, scaled the same way
    np.testing.assert_allclose(test["f3"], raw_test[:, 5] / (1 + 1e-4))  # kept: varies on train only
    assert (train["label"] == 0).all()
    labels = test["label"].to_numpy()
    assert np.flatnonzero(labels == 1).tolist() == [5, 6, 7, 8, 9]  # [5, 9]: the end is included
    assert np.flatnonzero(labels == 2).tolist() == list(range(30, 45))
    assert not (telemetry_built / "SMAP" / "D-12_train.csv").exists()
    assert not (telemetry_built / "SMAP" / "X-9_train.csv").exists()
    assert (pd.read_csv(telemetry_built / "MSL" / "C-1_test.csv")["label"] == 2).sum() == 5


def test_telemetry_index_and_labels_files(telemetry_built: Path, tmp_path: Path) -> None:
    index = pd.read_csv(telemetry_built / "index.csv")
    assert list(index.columns) == telemanom.INDEX_COLUMNS
    assert index["chan_id"].tolist() == ["A-1", "P-2", "D-12", "P-2", "C-1"]  # one line per labelled row
    a1 = index.iloc[0]
    assert (a1.n_features, a1.n_train, a1.n_test) == (4, 80, 60)
    assert (a1.test_nominal, a1.test_point, a1.test_contextual, a1.label_mismatch_vs_repo) == (40, 5, 15, 2)
    assert index.iloc[2].n_features == 0 and index.iloc[2].note == "all columns constant; skipped"
    assert np.isnan(index.iloc[2].n_train)
    # P-2 listed twice: its CSV follows the last row; rows 10, 11, 29 differ from the first row read end-exclusive
    assert index.iloc[1].test_point == 20 and index.iloc[3].test_point == 18
    assert index.iloc[1].label_mismatch_vs_repo == 1 and index.iloc[3].label_mismatch_vs_repo == 3
    assert (pd.read_csv(telemetry_built / "SMAP" / "P-2_test.csv")["label"] == 1).sum() == 18
    text = (telemetry_built / "index.csv").read_text().splitlines()
    assert text[1] == "A-1,SMAP,4,80.0,60.0,40.0,5.0,15.0,2.0,"  # the dev index's number format
    assert (telemetry_built / "labeled_anomalies.csv").read_bytes() == (
        tmp_path / "telemanom" / "labeled_anomalies.csv"
    ).read_bytes()


def test_telemetry_rerun_is_a_no_op_and_the_datamodule_reads_it(telemetry_built: Path, tmp_path: Path) -> None:
    from cnn_zoo.data.telemetry import TelemetryDataModule

    before = (telemetry_built / "index.csv").stat().st_mtime_ns
    again = run("telemetry", [f"data_dir={tmp_path / 'data'}"])  # no source needed: nothing is done
    assert not again.built and "nothing to do" in again.summary
    assert (telemetry_built / "index.csv").stat().st_mtime_ns == before
    datamodule = TelemetryDataModule(
        data_dir=str(tmp_path / "data"), path="telemetry/SMAP/A-1_test.csv", window=4, block_size=5
    )
    datamodule.setup("fit")
    assert datamodule.spec.in_channels == 4 and datamodule.spec.num_classes == 3


@pytest.mark.real_data
def test_real_telemetry_agrees_with_the_rules_and_its_index() -> None:
    """The dev CSVs: labels from labeled_anomalies.csv (last row, ends included), no column constant on train,
    train values in [0, 1), command bits 0 / 0.9999 (the 1e-4 range padding), and index.csv rebuilt from them
    by the same index-writing code, byte for byte."""
    root = require_real("telemetry")
    rows = telemanom.read_anomalies(root / "labeled_anomalies.csv")
    last = {row.chan_id: row for row in rows}
    shapes, notes = {}, {}
    for chan, row in last.items():
        train_csv = root / row.spacecraft / f"{chan}_train.csv"
        if not train_csv.is_file():
            notes[chan] = "all columns constant; skipped"
            continue
        train, test = pd.read_csv(train_csv), pd.read_csv(root / row.spacecraft / f"{chan}_test.csv")
        features = train.drop(columns="label")
        assert (features.max() > features.min()).all(), chan
        assert features.min().min() >= -1e-12 and features.max().max() < 1, chan
        bits = pd.concat([train, test]).iloc[:, 1:-1].to_numpy()
        assert set(np.unique(bits)) <= {0.0, 0.9999}, chan  # command bits: 1 / (1 + 1e-4), written as %g
        assert np.array_equal(test["label"].to_numpy(), row.labels(len(test))), chan
        shapes[chan] = (features.shape[1], len(train), len(test))
    rebuilt = telemanom.index_frame(rows, shapes, notes).to_csv(index=False)
    assert rebuilt == (root / "index.csv").read_text()


# ---------------------------------------------------------------------- missing data names the command; progress
def test_missing_data_names_the_prepare_command(tmp_path: Path) -> None:
    from cnn_zoo.data.image_folder import ImageFolderDataModule
    from cnn_zoo.data.imdb import IMDBDataModule
    from cnn_zoo.data.mnist import MNISTDataModule
    from cnn_zoo.data.telemetry import TelemetryDataModule

    cases = [
        (ImageFolderDataModule(data_dir=str(tmp_path)), "cnn-zoo-prepare catsdogs"),
        (MNISTDataModule(data_dir=str(tmp_path), download=False), "cnn-zoo-prepare mnist"),
        (IMDBDataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path), download=False), "cnn-zoo-prepare imdb"),
        (TelemetryDataModule(data_dir=str(tmp_path), path="telemetry/MSL/C-1_test.csv"), "cnn-zoo-prepare telemetry"),
    ]
    for datamodule, command in cases:
        with pytest.raises(CnnZooError, match=command):
            datamodule.setup("fit")


def test_progress_is_one_log_line_per_stage_without_a_terminal(tmp_path: Path, caplog, capsys) -> None:
    from cnn_zoo.data.image_folder import ImageFolderDataModule
    from tests.fixtures import make_image_folder

    make_image_folder(tmp_path / "pics", per_class=6, odd_files=False)
    caplog.set_level(logging.INFO, logger="cnn_zoo.runtime.progress")
    datamodule = ImageFolderDataModule(data_dir=str(tmp_path), folder="pics", image_size=16, validation_split=0.5)
    datamodule.setup("fit")
    lines = [r.getMessage() for r in caplog.records if r.name == "cnn_zoo.runtime.progress"]
    assert len(lines) == 2 and lines[0].startswith("decoding train images: 6 files in ")
    assert "%|" not in capsys.readouterr().err  # no tqdm bar drawn when stderr is not a terminal


# ---------------------------------------------------------------------- mnist and imdb through the same command
def test_mnist_and_imdb_through_the_command(tmp_path: Path, mnist_root: Path) -> None:
    from tests.fixtures_sequences import make_imdb_archive

    assert "nothing to do" in run("mnist", [f"data_dir={mnist_root}"]).summary
    archive = make_imdb_archive(tmp_path / "mirror")
    data = tmp_path / "data"
    copied = run("imdb", [f"source={archive}", f"data_dir={data}"])
    assert copied.built and (data / "aclImdb_v1.tar.gz").read_bytes() == archive.read_bytes()
    assert not (data / "aclImdb_v1.tar.gz.part").exists()
    assert "nothing to do" in run("imdb", [f"data_dir={data}"]).summary



def test_unreachable_download_through_the_command_is_one_line_exit_2(tmp_path: Path) -> None:
    for dataset, name in (("imdb", "aclImdb_v1.tar.gz"), ("catsdogs", "kagglecatsanddogs_5340.zip")):
        url = (tmp_path / "offline" / name).as_uri()
        result = prepare_cli(dataset, f"url={url}", f"data_dir={tmp_path / 'data'}", cache=tmp_path / "cache")
        assert result.returncode == 2, result.stderr
        last = result.stderr.strip().splitlines()
        assert len(last) == 1 and last[0].startswith("error: ") and url in last[0], result.stderr
        assert "Traceback" not in result.stderr
    assert f"place it at {tmp_path / 'cache' / 'downloads' / 'kagglecatsanddogs_5340.zip'}" in last[0]
