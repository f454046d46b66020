"""`python -m cnn_zoo.report`: figures and table from event files, for a run and for a sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from cnn_zoo.report import main, report
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


def test_report_of_a_trained_run(compose_cfg, mnist_root: Path, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg(
        f"paths.data_dir={mnist_root}", "data.download=false", "data.val_size=60", "data.batch_size=32", *FAST,
        "callbacks.confusion_matrix=null", "callbacks.misclassified=null", "callbacks.augmentation_preview=null",
    )  # fmt: skip
    metrics = train(cfg)
    main([str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {tmp_path / 'out' / 'report.md'}"
    assert (tmp_path / "out" / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "out" / "loss.png").read_bytes().startswith(PNG_MAGIC)
    row = next(line for line in (tmp_path / "out" / "report.md").read_text().splitlines() if line.startswith("| . "))
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
    assert lines[0].startswith("error: report: no TensorBoard event files") and str(tmp_path / "run") in lines[0]
