"""The bad-input corpus: every user mistake is one `error:` line naming the file or key, exit status 2, no traceback.

Each case runs an entry point's `main()` as the command line does (in-process, for speed; a few also as real
subprocesses) and checks that nothing the user had (data files, run folders, checkpoints) changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from cnn_zoo import evaluate as evaluate_module
from cnn_zoo import train as train_module
from tests.fixtures import make_image_folder, make_mnist
from tests.fixtures_sequences import telemetry_frame, write_csv

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["trainer.accelerator=cpu", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null", "logger=none"]
IMAGES = ["data=image_folder", "data.image_size=32", "data.num_workers=0", "data.on_bad_file=error", "model=small_cnn"]


class Payload:
    """What a hostile checkpoint carries: unpickling it would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo unpickled > /dev/null",))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every bad file, under one folder that doubles as the data folder."""
    root = tmp_path_factory.mktemp("corpus")
    make_mnist(root)
    # checkpoints
    ckpt = root / "ckpt"
    ckpt.mkdir()
    (ckpt / "garbage.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    (ckpt / "empty.ckpt").write_bytes(b"")
    (ckpt / "text.ckpt").write_text("epoch=3 weights=[0.1, 0.2]\n")
    torch.save({"weights": torch.ones(64, 64)}, ckpt / "not_ours.ckpt")
    whole = (ckpt / "not_ours.ckpt").read_bytes()
    (ckpt / "truncated.ckpt").write_bytes(whole[: len(whole) // 2])
    torch.save({"state_dict": {}, "payload": Payload()}, ckpt / "payload.ckpt")
    (ckpt / "payload.pkl").write_bytes(pickle.dumps({"payload": Payload()}))
    # a finished run (what the guards look at: its overrides, last.ckpt and metrics.json)
    run = root / "finished_run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- trainer.max_epochs=1\n")
    (run / "checkpoints").mkdir()
    shutil.copy(ckpt / "not_ours.ckpt", run / "checkpoints" / "last.ckpt")
    (run / "metrics.json").write_text(json.dumps({"test/acc": 0.5}) + "\n")
    (root / "no_run").mkdir()
    # image folders, one bad thing each
    base = make_image_folder(root / "images" / "base", per_class=6, odd_files=False)
    jpeg = next(base.glob("cats/*.jpg")).read_bytes()
    for name, write in {
        "corrupt": lambda d: (d / "cats" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg"),
        "truncated": lambda d: (d / "cats" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3]),
        "zero_byte": lambda d: (d / "cats" / "zero.png").write_bytes(b""),
        "empty_class": lambda d: [p.unlink() for p in (d / "dogs").iterdir()],
        "single_class": lambda d: shutil.rmtree(d / "dogs"),
    }.items():
        shutil.copytree(base, root / "images" / name)
        write(root / "images" / name)
    mismatched = make_image_folder(root / "images" / "mismatched", layout="folders", per_class=4, odd_files=False)
    (mismatched / "validation" / "dogs").rename(mismatched / "validation" / "birds")
    # telemetry CSVs
    good = telemetry_frame(200, anomalies=((40, 80, 1), (120, 160, 2)), seed=0)
    csv = root / "csv"
    write_csv(csv / "good.csv", good)
    for name, change in {
        "nan": lambda f: f.assign(f0=f.f0.where(f.index != 7)),
        "inf": lambda f: f.assign(f0=f.f0.where(f.index != 7, np.inf)),
        "strings": lambda f: f.assign(f0=f.f0.astype(object).where(f.index != 7, "high")),
        "float_labels": lambda f: f.assign(label=f.label.astype(float).where(f.index != 7, 0.5)),
    }.items():
        write_csv(csv / f"{name}.csv", change(good.copy()))
    text = (csv / "good.csv").read_text().splitlines()
    (csv / "ragged.csv").write_text("\n".join([*text[:9], text[9] + ",1,2", *text[10:]]) + "\n")
    (csv / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(2000))
    (csv / "semicolons.csv").write_text("\n".join(line.replace(",", ";") for line in text) + "\n")
    (csv / "no_rows.csv").write_text(text[0] + "\n")
    return root


@dataclass(frozen=True)
class Case:
    entry: str  # train | evaluate
    args: Callable[[Path], list[str]]
    names: str  # what the error line must name: a key or a file (`{root}` is the corpus folder)


def ckpt(name: str) -> Callable[[Path], list[str]]:
    return lambda root: [f"ckpt_path={root / 'ckpt' / name}"]


def images(name: str, *extra: str) -> Callable[[Path], list[str]]:
    return lambda root: [*IMAGES, f"data.folder={root / 'images' / name}", *extra]


def csv(name: str) -> Callable[[Path], list[str]]:
    return lambda root: ["data=telemetry", f"data.path={root / 'csv' / name}", "model=conv1d_telemetry"]


CASES = {
    # config values
    "max_epochs_not_a_number": Case("train", lambda r: ["trainer.max_epochs=abc"], "trainer.max_epochs"),
    "precision_unknown": Case("train", lambda r: ["trainer.precision=fp12"], "trainer.precision"),
    "accumulate_float": Case("train", lambda r: ["trainer.accumulate_grad_batches=1.5"], "trainer.accumulate_grad"),
    "batch_size_zero": Case("train", lambda r: ["data.batch_size=0"], "data.batch_size"),
    "normalize_unknown": Case("train", lambda r: ["data.normalization=zscore"], "data.normalization"),
    "class_weights_bad": Case("train", lambda r: ["model.class_weights=heavy"], "model.class_weights"),
    "lr_not_a_number": Case("train", lambda r: ["optimizer.lr=fast", "trainer.max_epochs=1"], "optimizer"),
    "fast_not_a_switch": Case("train", lambda r: ["fast=maybe"], "fast must be one of auto, true, false"),
    "interpolation_of_an_unset_variable": Case(
        "train", lambda r: ["trainer.max_epochs=${oc.env:CNN_ZOO_TEST_UNSET}"], "at trainer.max_epochs"
    ),
    # checkpoints given to train and to evaluate
    "train_garbage_ckpt": Case("train", ckpt("garbage.ckpt"), "garbage.ckpt"),
    "train_empty_ckpt": Case("train", ckpt("empty.ckpt"), "empty.ckpt"),
    "train_text_ckpt": Case("train", ckpt("text.ckpt"), "text.ckpt"),
    "train_truncated_ckpt": Case("train", ckpt("truncated.ckpt"), "truncated.ckpt"),
    "train_payload_ckpt": Case("train", ckpt("payload.ckpt"), "payload.ckpt"),
    "train_pickle_ckpt": Case("train", ckpt("payload.pkl"), "payload.pkl"),
    "train_foreign_ckpt": Case("train", ckpt("not_ours.ckpt"), "not a cnn_zoo training checkpoint"),
    "train_missing_ckpt": Case("train", ckpt("missing.ckpt"), "missing.ckpt"),
    "train_ckpt_last_without_run": Case("train", lambda r: ["ckpt_path=last"], "ckpt_path=last"),
    "evaluate_garbage_ckpt": Case("evaluate", ckpt("garbage.ckpt"), "garbage.ckpt"),
    "evaluate_payload_ckpt": Case("evaluate", ckpt("payload.ckpt"), "payload.ckpt"),
    "evaluate_truncated_ckpt": Case("evaluate", ckpt("truncated.ckpt"), "truncated.ckpt"),
    "evaluate_foreign_ckpt": Case("evaluate", ckpt("not_ours.ckpt"), "not a cnn_zoo checkpoint"),
    # run folders
    "run_dir_holds_a_finished_run": Case(
        "train", lambda r: [f"hydra.run.dir={r / 'finished_run'}"], "{root}/finished_run"
    ),
    "resume_folder_without_run": Case("train", lambda r: [f"resume={r / 'no_run'}"], "{root}/no_run"),
    "resume_with_a_changed_model": Case(
        "train", lambda r: [f"resume={r / 'finished_run'}", "model=lenet"], "'model=lenet'"
    ),
    # image folders (data.on_bad_file=error makes an unreadable file fatal; the default skips and reports it)
    "image_corrupt": Case("train", images("corrupt"), "corrupt.jpg"),
    "image_truncated": Case("train", images("truncated"), "truncated.jpg"),
    "image_zero_byte": Case("train", images("zero_byte"), "zero.png"),
    "image_empty_class": Case("train", images("empty_class"), "{root}/images/empty_class"),
    "image_single_class": Case("train", images("single_class"), "{root}/images/single_class"),
    "image_mismatched_classes": Case("train", images("mismatched"), "{root}/images/mismatched"),
    "image_folder_missing": Case("train", images("nowhere"), "{root}/images/nowhere"),
    # telemetry CSVs
    "csv_nan": Case("train", csv("nan.csv"), "nan.csv"),
    "csv_inf": Case("train", csv("inf.csv"), "inf.csv"),
    "csv_strings": Case("train", csv("strings.csv"), "strings.csv"),
    "csv_ragged_rows": Case("train", csv("ragged.csv"), "ragged.csv"),
    "csv_binary_bytes": Case("train", csv("binary.csv"), "binary.csv"),
    "csv_float_labels": Case("train", csv("float_labels.csv"), "float_labels.csv"),
    # semicolons are sniffed (tests/test_files_users_bring.py); a wrong explicit delimiter leaves one column
    "csv_wrong_delimiter": Case(
        "train", lambda r: [*csv("semicolons.csv")(r), "data.delimiter='|'"], "semicolons.csv"
    ),
    "csv_no_rows": Case("train", csv("no_rows.csv"), "no_rows.csv"),
    "csv_missing": Case("train", csv("missing.csv"), "missing.csv"),
}
# these also run as real subprocesses of the console entry points
SUBPROCESS = (
    "max_epochs_not_a_number",
    "train_garbage_ckpt",
    "evaluate_garbage_ckpt",
    "run_dir_holds_a_finished_run",
    "fast_not_a_switch",
)


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under `root` (the user's data, runs and checkpoints) by content."""
    return {
        str(p.relative_to(root)): hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "outputs" not in p.relative_to(root).parts
    }


def arguments(case: Case, corpus: Path, tmp_path: Path) -> list[str]:
    args = case.args(corpus)
    if any(a.startswith("resume=") for a in args):  # resume= takes no other overrides
        return args
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    extra = [*QUIET] if case.entry == "train" else ["trainer.accelerator=cpu"]
    if case.entry == "train" and not any(a.startswith("data=") for a in args):
        extra.append("data.download=false")  # MNIST: the corpus folder holds the generated one
    return [*extra, *args]


def check_output(case: Case, corpus: Path, status: int | None, stderr: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert status == 2, stderr[-3000:]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    assert case.names.format(root=corpus) in errors[0]
    assert "weights_only=False" not in stderr and "`weights_only` set to `False`" not in stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_error_line(name: str, corpus: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    case = CASES[name]
    monkeypatch.setenv("CNN_ZOO_DATA_DIR", str(corpus))
    monkeypatch.setenv("CNN_ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    module = train_module if case.entry == "train" else evaluate_module
    monkeypatch.setattr(sys, "argv", [f"cnn_zoo.{case.entry}", *arguments(case, corpus, tmp_path)])
    before = fingerprint(corpus)
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    finally:
        GlobalHydra.instance().clear()
    captured = capsys.readouterr()
    check_output(case, corpus, exit_info.value.code, captured.err)
    assert fingerprint(corpus) == before


@pytest.mark.parametrize("name", SUBPROCESS)
def test_bad_input_through_the_real_command(name: str, corpus: Path, tmp_path: Path) -> None:
    case = CASES[name]
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(corpus), "CNN_ZOO_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    before = fingerprint(corpus)
    result = subprocess.run(
        [sys.executable, "-m", f"cnn_zoo.{case.entry}", *arguments(case, corpus, tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    check_output(case, corpus, result.returncode, result.stderr)
    assert fingerprint(corpus) == before


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("cmyk.jpg", lambda a: Image.fromarray(a).convert("CMYK")),
        ("rgba.png", lambda a: Image.fromarray(np.dstack([a, np.full(a.shape[:2], 200, np.uint8)]))),
        ("gray16.png", lambda a: Image.fromarray(a[:, :, 0].astype(np.uint16) * 257)),
        ("one_pixel.png", lambda a: Image.fromarray(a[:1, :1])),
        ("wide.png", lambda a: Image.fromarray(np.resize(a, (20, 30000, 3)))),
    ],
)
def test_odd_but_valid_images_are_read_not_refused(name: str, make, compose_cfg, tmp_path: Path) -> None:
    from cnn_zoo.training.pipeline import build_datamodule

    root = make_image_folder(tmp_path / "images", per_class=6, odd_files=False)
    make(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "cats" / name)
    cfg = compose_cfg(*IMAGES, f"data.folder={root}", "data.validation_split=0.25")
    datamodule = build_datamodule(cfg)
    assert datamodule.skipped == []
    images_seen = sum(len(d) for d in (datamodule.train_set, datamodule.val_set))
    assert images_seen == 13


def test_empty_and_non_utf8_reviews_are_read(tmp_path: Path) -> None:
    from cnn_zoo.data.imdb import IMDBDataModule
    from tests.fixtures_sequences import make_imdb_tree

    root = make_imdb_tree(tmp_path / "data", per_class=8, test_per_class=4)
    (root / "aclImdb" / "train" / "pos" / "100_9.txt").write_bytes(b"")
    (root / "aclImdb" / "train" / "neg" / "101_2.txt").write_bytes("Caf\xe9 cr\xe8me: awful".encode("latin-1"))
    datamodule = IMDBDataModule(
        data_dir=str(root), cache_dir=str(tmp_path / "cache"), download=False, val_size=4, num_words=50, max_len=20
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.train_set) + len(datamodule.val_set) == 18


def test_prepare_refuses_a_local_imdb_source_that_is_not_the_archive(tmp_path: Path) -> None:
    source = tmp_path / "aclImdb_v1.tar.gz"
    source.write_bytes(np.random.default_rng(3).bytes(5000))
    data_dir = tmp_path / "data"
    env = {**os.environ, "CNN_ZOO_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, "-m", "cnn_zoo.prepare", "imdb", f"source={source}", f"data_dir={data_dir}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"source={source} is not the IMDB archive (its md5 is " in errors[0]
    assert "not a readable .tar.gz" in errors[0]
    assert not (data_dir / "aclImdb_v1.tar.gz").exists()


# The faults a long run meets, injected at a training step (tests/fixtures_faults.py; tests/test_faults.py checks
# the checkpoints, the full disk, the stop signals and the resumed runs): one line, their exit status, no traceback.
FAULTS = {
    "diverged_loss": ({"CNN_ZOO_TEST_FAULT": "nan"}, [], 3, "training diverged at epoch 1, step 3: loss is nan"),
    "cuda_out_of_memory": ({"CNN_ZOO_TEST_FAULT": "cuda_oom"}, [], 2, "trainer.accumulate_grad_batches=2"),
    "cpu_out_of_memory": ({"CNN_ZOO_TEST_FAULT": "cpu_oom"}, [], 2, "out of memory on the CPU ("),
    "memory_error": ({"CNN_ZOO_TEST_FAULT": "memory"}, [], 2, "at data.batch_size=32"),
    "disk_full_writing_an_event_file": (
        {"CNN_ZOO_TEST_FAULT": "disk_full_event"},
        [],
        2,
        "no space left on device writing {run}/tensorboard/events.out.tfevents.1.host (",
    ),
    "worker_killed": (
        {"CNN_ZOO_TEST_FAULT": "kill_worker"},
        ["data.num_workers=2"],
        2,
        "with data.num_workers=2: most often",
    ),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_a_fault_mid_run_is_one_error_line(name: str, corpus: Path, tmp_path: Path) -> None:
    fault, extra, status, names = FAULTS[name]
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(corpus), "CNN_ZOO_CACHE_DIR": str(tmp_path / "cache")}
    env.update({**fault, "CNN_ZOO_TEST_FAULT_STEP": "2", "OMP_NUM_THREADS": "1"})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    args = [*QUIET, "data.download=false", "data.val_size=60", "data.batch_size=32", "trainer.max_epochs=1", *extra]
    args += ["+callbacks.inject._target_=tests.fixtures_faults.InjectFault", f"hydra.run.dir={tmp_path / 'run'}"]
    before = fingerprint(corpus)
    result = subprocess.run(
        [sys.executable, "-m", "cnn_zoo.train", *args], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == status, result.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert names.format(run=tmp_path / "run") in errors[0]
    assert fingerprint(corpus) == before
