"""`data=text_csv`: your own documents in a CSV train a Conv1D, and every command reads the checkpoint."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_zoo.data.text_csv import TextCsvDataModule
from cnn_zoo.runtime.errors import CnnZooError

TOPICS = {
    "sport": ["goal", "match", "team", "score"],
    "food": ["bread", "soup", "spice", "bake"],
    "tech": ["chip", "code", "robot", "cloud"],
}
FILLER = ["the", "a", "today", "we", "saw", "and", "very", "some"]


def write_documents(path: Path, per_class: int = 40, seed: int = 0, label_column: str = "label") -> Path:
    """Three topics, each document a few topic words among filler words."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", label_column])
        for topic, words in TOPICS.items():
            for n in range(per_class):
                tokens = list(rng.choice(FILLER, 8)) + list(rng.choice(words, 3))
                rng.shuffle(tokens)
                writer.writerow([f"{topic}{n}", " ".join(tokens) + ", indeed!", topic])
    return path


def test_one_csv_is_split_per_class_and_classes_come_from_the_labels(tmp_path: Path) -> None:
    data = TextCsvDataModule(
        path=str(write_documents(tmp_path / "docs.csv")), max_len=16, val_size=0.25, test_size=0.25
    )
    data.setup("fit")
    assert data.spec.class_names == ("food", "sport", "tech")
    assert data.spec.kind == "text" and data.spec.input_shape == (16,)
    assert data.spec.stats.split_sizes == {"train": 60, "val": 30, "test": 30}
    assert data.spec.stats.class_counts == (20, 20, 20)
    assert "goal" in data.vocab and len(data.vocab) == len(set(data.vocab))
    assert "indeed" in data.vocab and "," not in data.vocab  # tokenised as the IMDB reviews: punctuation dropped
    x, y = data.train_set[0]
    assert x.shape == (16,) and int(y) in (0, 1, 2)


def test_mistakes_in_the_file_are_one_line_naming_it(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs.csv", label_column="topic")
    with pytest.raises(CnnZooError, match=r"has no column 'label' \(data.label_column\); its columns are"):
        TextCsvDataModule(path=str(docs)).setup("fit")
    with pytest.raises(CnnZooError, match="text CSV not found"):
        TextCsvDataModule(path=str(tmp_path / "absent.csv")).setup("fit")
    with pytest.raises(CnnZooError, match="not classes"):
        TextCsvDataModule(path=str(docs), label_column="topic", class_names=["sport", "food"]).setup("fit")
    with pytest.raises(CnnZooError, match="data.path=<one CSV> or data.train_path"):
        TextCsvDataModule()


def command(name: str, *args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNN_ZOO_DATA_DIR": str(data_dir), "CNN_ZOO_CACHE_DIR": str(data_dir / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", f"cnn_zoo.{name}", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_text_csv_trains_evaluates_and_predicts_from_the_command_line(tmp_path: Path) -> None:
    write_documents(tmp_path / "docs.csv")
    run = tmp_path / "run"
    small_net = ["model.net.kernel_size=3", "model.net.pool_size=2", "model.net.embedding_dim=16"]
    command(
        "train",
        "data=text_csv",
        "data.path=docs.csv",
        "data.max_len=16",
        "model=conv1d_text",
        *small_net,
        "trainer.max_epochs=8",
        "trainer.accelerator=cpu",
        "callbacks.early_stopping=null",
        "optimizer.lr=0.01",
        f"hydra.run.dir={run}",
        data_dir=tmp_path,
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.6  # three topics: chance is 1/3
    best = next((run / "checkpoints").glob("epoch_*.ckpt"))
    command(
        "evaluate", f"ckpt_path={best}", "top_losses=0", f"hydra.run.dir={tmp_path / 'evaluate'}", data_dir=tmp_path
    )
    evaluated = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    # the same documents, split and vocabulary, rebuilt from the checkpoint's data config
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    query = tmp_path / "new.csv"
    query.write_text("text\nthe team scored a goal in the match\nwe bake bread and soup\n")
    command(
        "predict", f"ckpt_path={best}", f"input={query}", f"output={tmp_path / 'predictions.csv'}", data_dir=tmp_path
    )
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert [row["predicted"] for row in rows] == ["sport", "food"]
    assert {"prob_food", "prob_sport", "prob_tech"} <= set(rows[0])
