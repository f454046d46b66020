"""Benchmark: the notes' telemetry Conv1D on real NASA channels against a majority-class and a logistic-regression
baseline, all on the same split and the same (standardised) inputs.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_telemetry.py [--channels MSL/C-1 SMAP/E-3] \
        [--modes window row] [--folds 5] [--seeds 42 1 2] [--epochs 30] [--extra data.window=32 ...]

Each channel's `_train.csv` (all nominal) and `_test.csv` (the labelled anomalies) are read as two segments
of one series and split stratified by class: rows in row mode, contiguous blocks of 2 x window rows in window
mode, so no window straddles two parts (README, `data=telemetry`). Without `--folds`: one 70/15/15 split. With
`--folds k`: blocked k-fold, k runs in which every block is tested once (validation: 15% of the other blocks),
scored on the pooled out-of-fold predictions, so all of a channel's few anomaly episodes are measured rather
than the handful of windows one held-out part gets. `--seeds`: several split and initialisation seeds, with
their mean. The Conv1D goes through the normal train pipeline (`experiment=telemetry_conv1d`); the baselines
see the same samples (logistic regression: the flattened window or row, class_weight=balanced, as the Conv1D's
balanced loss). Prints a markdown table (accuracy, macro-F1, per-class recall) and writes it with the raw
figures to <out>/telemetry.{md,json}. The Conv1D must beat both baselines on macro-F1.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, recall_score

from bench_common import markdown_table, mean_over_seeds, run_experiment, write_report
from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.data.telemetry import as_arrays
from cnn_zoo.training.inference import load_classifier
from cnn_zoo.training.pipeline import build_datamodule


def scores(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict:
    labels = list(range(num_classes))
    recall = recall_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return {
        "acc": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        "recall": [round(float(r), 3) for r in recall],
    }


@torch.no_grad()
def conv1d_predictions(checkpoint: Path, x: np.ndarray) -> np.ndarray:
    model = load_classifier(checkpoint)
    probs = torch.cat([model.probabilities(model(batch)) for batch in torch.from_numpy(x).split(512)])
    return (probs > 0.5).long().numpy() if probs.ndim == 1 else probs.argmax(dim=1).numpy()


def split_run(
    channel: str, mode: str, seed: int, folds: tuple[int, int] | None, epochs: int, out: Path, extra: list[str]
) -> dict:
    """Train the Conv1D and fit both baselines on one split (a fold of k, or the 70/15/15 split): test predictions."""
    spacecraft, name = channel.split("/")
    fold_name = f"_fold{folds[1]}of{folds[0]}" if folds else ""
    run_dir = out / f"telemetry_{spacecraft}_{name}_{mode}_seed{seed}{fold_name}_{datetime.now():%Y%m%d_%H%M%S}"
    overrides = [
        "experiment=telemetry_conv1d",
        f"data.path=[telemetry/{channel}_train.csv,telemetry/{channel}_test.csv]",
        f"data.mode={mode}",
        f"trainer.max_epochs={epochs}",
        f"seed={seed}",
        "trainer.accelerator=cpu",
        "logger=csv",
        *([f"data.folds={folds[0]}", f"data.fold={folds[1]}"] if folds else []),
        *extra,
    ]
    _, timer = run_experiment(overrides, run_dir)
    datamodule = build_datamodule(compose_train_config(overrides, run_dir / "baselines"))
    num_classes = datamodule.spec.num_classes
    train_x, train_y = as_arrays(datamodule.train_set)
    test_x, test_y = as_arrays(datamodule.test_set)
    checkpoint = next((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    majority = int(np.bincount(train_y, minlength=num_classes).argmax())
    logreg = LogisticRegression(max_iter=3000, class_weight="balanced")
    logreg.fit(train_x.reshape(len(train_x), -1), train_y)
    return {
        "truth": test_y,
        "predictions": {
            "conv1d": conv1d_predictions(checkpoint, test_x),
            "majority": np.full_like(test_y, majority),
            "logreg": logreg.predict(test_x.reshape(len(test_x), -1)),
        },
        "num_classes": num_classes,
        "window": datamodule.spec.preprocessing.window,
        "epochs": len(timer.durations),
        "seconds": sum(timer.durations),
    }


def run(channel: str, mode: str, seed: int, folds: int | None, epochs: int, out: Path, extra: list[str]) -> list[dict]:
    """One row per model; with `folds`, scored on the pooled out-of-fold test predictions of all k folds."""
    splits = [
        split_run(channel, mode, seed, (folds, fold) if folds else None, epochs, out, extra)
        for fold in range(folds or 1)
    ]
    truth = np.concatenate([s["truth"] for s in splits])
    num_classes = max(s["num_classes"] for s in splits)
    common = {
        "channel": channel,
        "mode": mode if mode == "row" else f"window{splits[0]['window']}",
        "split": f"{folds}-fold" if folds else "70/15/15",
        "seed": seed,
        "test n (per class)": "/".join(str(c) for c in np.bincount(truth, minlength=num_classes)),
    }
    rows = []
    for model in splits[0]["predictions"]:
        predicted = np.concatenate([s["predictions"][model] for s in splits])
        rows.append(common | {"model": model} | scores(truth, predicted, num_classes))
    epochs = sum(s["epochs"] for s in splits)
    rows[0] |= {"epochs": epochs, "s/epoch": round(sum(s["seconds"] for s in splits) / max(epochs, 1), 1)}
    rows[0]["beats baselines"] = "yes" if rows[0]["macro_f1"] > max(r["macro_f1"] for r in rows[1:]) else "no"
    for row in rows:
        print(row, flush=True)
    return rows


def beats_baselines(summary: list[dict]) -> None:
    """Mark each Conv1D row whose mean macro-F1 is above every baseline's on the same channel and mode."""
    for row in summary:
        if row["model"] == "conv1d":
            rivals = [
                r["macro_f1"]
                for r in summary
                if r["model"] != "conv1d"
                and (r["channel"], r["mode"], r["split"]) == (row["channel"], row["mode"], row["split"])
            ]
            row["beats baselines"] = "yes" if row["macro_f1"] > max(rivals) else "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", nargs="+", default=["MSL/C-1", "SMAP/E-3"])
    parser.add_argument("--modes", nargs="+", default=["window", "row"], choices=["window", "row"])
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[42],
        help="split and initialisation seeds (a few anomaly windows per "
        "test split make one seed's macro-F1 noisy: the summary averages over seeds)",
    )
    parser.add_argument(
        "--folds", type=int, default=None, help="blocked k-fold: every block tested once, scores on pooled predictions"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    args = parser.parse_args()
    rows = [
        row
        for channel in args.channels
        for mode in args.modes
        for seed in args.seeds
        for row in run(channel, mode, seed, args.folds, args.epochs, args.out, args.extra)
    ]
    columns = [
        "channel",
        "mode",
        "split",
        "seed",
        "model",
        "acc",
        "macro_f1",
        "recall",
        "test n (per class)",
        "epochs",
        "s/epoch",
        "beats baselines",
    ]
    table = markdown_table(rows, columns)
    if len(args.seeds) > 1:
        summary = mean_over_seeds(rows, ["channel", "mode", "split", "model"], ["macro_f1", "acc"])
        beats_baselines(summary)
        table += "\n\nMean over seeds " + ", ".join(map(str, args.seeds)) + ":\n\n"
        table += markdown_table(
            summary,
            ["channel", "mode", "split", "model", "seeds", "acc", "macro_f1", "macro_f1 per seed", "beats baselines"],
        )
    write_report(args.out, "telemetry", "Telemetry benchmark", table, rows)


if __name__ == "__main__":
    main()
