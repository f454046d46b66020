"""`python -m cnn_zoo.report`: figures and table from event files, for a run and for a sweep."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from cnn_zoo.report import main, report
from cnn_zoo.reporting.run_page import describe_run, per_class, write_run_page
from cnn_zoo.search import sweeps
from cnn_zoo.train import train
from tests.conftest import FAST

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir: Path, val_acc: list[float], test_acc: float) -> None:
    """Event files laid out as Lightning writes them: epoch-level tags at each epoch's last step, plus `epoch`."""
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    for epoch, acc in enumerate(val_acc):
        step = 10 * (epoch + 1) - 1
        for tag, value in (("train/acc_epoch", acc - 0.1), ("val/acc", acc), ("train/loss_epoch", 1 - acc)):
            writer.add_scalar(tag, value, step)
        writer.add_scalar("val/loss", 1.1 - acc, step)
        writer.add_scalar("epoch", epoch, step)
    last = 10 * len(val_acc)
    writer.add_scalar("test/acc", test_acc, last)
    writer.add_scalar("epoch", len(val_acc), last)  # the test stage's epoch comes after the last one
    writer.close()


def test_sweep_report_has_figures_per_job_and_one_table(tmp_path: Path) -> None:
    write_run(tmp_path / "0", [0.5, 0.9, 0.8], test_acc=0.85)
    write_run(tmp_path / "1", [0.6, 0.7], test_acc=0.65)
    path = report(tmp_path)
    assert path == tmp_path / "report" / "report.md"
    for job in ("0", "1"):
        for name in ("accuracy", "loss"):
            assert (tmp_path / "report" / job / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    text = path.read_text()
    assert "| 0 | 3 | 0.9000 (2) | 0.2000 (2) | 0.7000 | 0.8000 | 0.8500 |" in text
    assert "| 1 | 2 | 0.7000 (2) | 0.4000 (2) | 0.6000 | 0.7000 | 0.6500 |" in text
    assert "![accuracy](1/accuracy.png)" in text
    main([str(tmp_path)])  # the command: the sweep page and each job's own page
    page = (tmp_path / "report.html").read_text()
    assert page.count('<tr class="job') == 2 and 'href="0/report.html"' in page and 'id="curves-figure"' in page
    assert 'id="curves-figure"' in (tmp_path / "1" / "report.html").read_text()


def test_report_of_a_trained_run(compose_cfg, mnist_root: Path, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg(
        f"paths.data_dir={mnist_root}", "data.download=false", "data.val_size=60", "data.batch_size=32", *FAST,
        "callbacks.confusion_matrix=null", "callbacks.misclassified=null", "callbacks.augmentation_preview=null",
    )  # fmt: skip
    metrics = train(cfg)
    page = tmp_path / "run" / "report.html"
    assert page.is_file()  # written by training itself
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["command"] == "train" and record["machine"]["precision"] in ("bf16-mixed", "32-true")
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert all(e["samples"] == 300 - 60 and e["samples_per_second"] > 0 for e in record["epochs"])  # train - val
    assert record["duration_seconds"] >= record["fit_seconds"] > 0 and record["tested"].startswith("epoch_")
    assert "net.features" in (tmp_path / "run" / "network.txt").read_text()
    assert "train/acc_epoch" not in json.loads((tmp_path / "run" / "metrics.json").read_text())
    page.unlink()
    main([str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-2:] == [f"report: {page}", f"report: {tmp_path / 'out' / 'report.md'}"]
    assert 'id="curves-figure"' in page.read_text()
    assert (tmp_path / "out" / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "out" / "loss.png").read_bytes().startswith(PNG_MAGIC)
    table = [line for line in (tmp_path / "out" / "report.md").read_text().splitlines() if line.startswith("| ")]
    row = table[1]  # after the header: the run, by its folder's name
    assert row.startswith("| run | ")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2"  # epochs
    assert float(cells[6]) == pytest.approx(metrics["test/acc"], abs=1e-4)


def test_folder_without_event_files_is_one_clear_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "run")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: report: no run or sweep in") and str(tmp_path / "run") in lines[0]


def test_run_page_reads_the_run_folder_files(tmp_path: Path) -> None:
    """Curves from the event files, the matrix's per-class scores, the top-loss tables, the data counts."""
    run = tmp_path / "2026-01-01_mnist_lenet"
    write_run(run, [0.5, 0.9, 0.8], test_acc=0.85)
    (run / "metrics.json").write_text(json.dumps({"test/acc": 0.85, "test/acc_tta": 0.875, "val/acc": 0.8}))
    matrix = {"class_names": ["cat", "dog"], "matrix": [[8, 2], [1, 9]], "tested": "epoch_001.ckpt"}
    (run / "confusion_matrix.json").write_text(json.dumps(matrix))
    (run / "most_confused.md").write_text("# x\n\n| true | predicted | count |\n|---|---|---|\n| cat | dog | 2 |\n")
    facts = {"class_names": ["cat", "dog"], "split_sizes": {"train": 20, "val": 4, "test": 20},
             "split_class_counts": {"train": [10, 10], "test": [10, 10]}}  # fmt: skip
    (run / "data.json").write_text(json.dumps(facts))
    (run / "top_losses.html").write_text('<div class="tokens"><span title="+1">dull</span></div>')
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "epoch_001.ckpt").write_bytes(b"x")
    section = describe_run(run)
    assert section.best == "best epoch 2: val/acc = 0.9000 (max)"
    assert section.curves and section.curves.startswith("data:image/png;base64,")
    assert base64.b64decode(section.curves.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert ("acc", "0.8500", "0.8750") in section.test_rows  # TTA beside plain
    cat, dog = section.classes
    assert (cat["precision"], cat["recall"], cat["support"]) == ("0.8889", "0.8000", 10)
    assert dog["f1"] == f"{2 * 0.818181 * 0.9 / (0.818181 + 0.9):.4f}"
    assert section.confused == (["true", "predicted", "count"], [["cat", "dog", "2"]])
    assert section.data_header == ["split", "samples", "cat", "dog"]
    assert section.data_rows == [["train", "20", "10", "10"], ["val", "4", "", ""], ["test", "20", "10", "10"]]
    assert ("checkpoints/epoch_001.ckpt", "0.0 MB") in section.links
    html = write_run_page(run).read_text()
    assert "<title>cnn_zoo run 2026-01-01_mnist_lenet</title>" in html and 'href="checkpoints/epoch_001.ckpt"' in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network
    assert '<div id="top-losses-reviews">' in html and '<span title="+1">dull</span>' in html  # the reviews' words


def test_per_class_scores_of_a_class_never_predicted() -> None:
    rows = per_class([[3, 0], [2, 0]], ["a", "b"])
    assert rows[0]["precision"] == pytest.approx(0.6) and rows[0]["recall"] == 1.0
    assert math.isnan(rows[1]["precision"]) and rows[1]["recall"] == 0.0 and rows[1]["f1"] == 0.0


def test_a_job_folder_is_named_by_its_swept_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = ["model=lenet", "trainer.max_epochs=1", "optimizer.lr=0.001", "hydra.sweep.dir=/x", "+a/b=c d"]
    monkeypatch.setattr(sweeps, "swept_keys", {"model", "optimizer.lr"})
    assert sweeps.job_folder(3, overrides) == "3_model=lenet,optimizer.lr=0.001"
    monkeypatch.setattr(sweeps, "swept_keys", None)  # not known (another process launched it): every override
    assert sweeps.job_folder(0, overrides) == "0_a-b=c-d,model=lenet,optimizer.lr=0.001,trainer.max_epochs=1"
    assert sweeps.job_folder(1, ["paths.data_dir=/data"]) == "1"
    assert len(sweeps.job_folder(12, [f"k{i}=" + "v" * 30 for i in range(9)])) == 3 + sweeps.FOLDER_NAME_LENGTH
    assert [sweeps.job_number(Path(n)) for n in ("3_model=lenet", "12", "x_1", "summary.md")] == [3, 12, None, None]


def test_sweep_page_of_an_optuna_study_has_history_and_importances(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna", reason="the `hpo` extra is not installed")
    from cnn_zoo.reporting.sweep_page import describe_sweep, write_sweep_page

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="minimize")
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True) + len(t.suggest_categorical("m", ["a", "bb"])),
                   n_trials=5)  # fmt: skip
    settings = {"optimized_metric": "val/loss", "direction": "minimize", "storage": storage, "study_name": "s"}
    (tmp_path / "sweep.json").write_text(json.dumps(settings))
    for trial in study.trials:
        folder = tmp_path / f"{trial.number}_lr={trial.params['lr']:.4g},m={trial.params['m']}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- lr={trial.params['lr']:.4g}\n- m={trial.params['m']}\n")
        (folder / "metrics.json").write_text(json.dumps({"val/loss": trial.value}))
    sweep = describe_sweep(tmp_path)
    assert sweep["optuna"]["trials"] == 5 and sweep["direction"] == "minimize"
    assert sweep["optuna"]["history"].startswith("data:image/png") and sweep["optuna"]["importances"]
    assert [row["best"] for row in sweep["jobs"]].index(True) == study.best_trial.number
    assert sweep["varying"] == ["lr", "m"] or sweep["varying"] == ["lr"]  # m may come out the same in 5 trials
    page = write_sweep_page(tmp_path).read_text()
    assert 'id="optuna-importances"' in page and page.count('<tr class="job') == 5


def test_top_loss_rows_of_a_row_mode_model_are_drawn_against_their_column_names(tmp_path: Path) -> None:
    import numpy as np

    from cnn_zoo.interpretation.render import series_grid

    rows = np.random.default_rng(0).normal(size=(3, 1, 4))  # mode=row: one channel, positions are the columns
    columns = ["speed", "temp", "volt", "amps"]
    fig = series_grid(rows, ["a→b", "b→a", "a→b"], ["row"], tmp_path / "t.png", "top losses", step_names=columns)
    assert (tmp_path / "t.png").read_bytes().startswith(PNG_MAGIC)
    shown = [ax for ax in fig.axes if ax.axison]
    assert len(shown) == 3
    assert [t.get_text() for t in shown[0].get_xticklabels()] == columns
    windows = np.zeros((2, 3, 8))  # mode=window: features over time, the labelling step shaded
    fig = series_grid(windows, ["x", "y"], ["f0", "f1", "f2"], None, "top losses", labelled_step=-1)
    assert fig.axes[0].get_xlabel() == "time step" and fig.axes[0].patches  # the shaded last step
