"""`python -m cnn_zoo.predict ckpt_path=... input=...`: class probabilities for images, texts or sequences.

Needs nothing but the checkpoint (or an exported model with its JSON sidecar: `model_path=<file>.onnx|.pt`):
the spec inside says what the input is and how it is preprocessed. Inputs per kind:
- images: a file or a folder (recursive); unreadable files are listed in one warning and in `unreadable.txt`;
- text: a `.txt` file, a folder of them, or a CSV column (`input=reviews.csv input_column=text`);
- sequences: a CSV with the training feature columns; one prediction per window end (`row`: its 0-based data row);
- a kind of your own: what its `DataKind.samples` reads (`cnn_zoo.data.kinds`).
Output: `format=csv` (default) or `json`; `top_k=k` adds the k most probable classes; `tta=...` for images.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Protocol

import lightning as L
import pandas as pd
import torch
from omegaconf import DictConfig
from torch import Tensor

from cnn_zoo.cli.hydra_entry import entry_point
from cnn_zoo.data.kinds import RawInput
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.runtime import startup_gc
from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.training.inference import load_classifier
from cnn_zoo.training.options import check_model_options
from cnn_zoo.training.tta import TestTimeAugmentation

log = logging.getLogger(__name__)
FORMATS = ("csv", "json")


class Predictor(Protocol):
    """Anything that maps a preprocessed batch to class probabilities (N, C): a checkpoint or an exported file."""

    spec: DataSpec

    def probabilities(self, x: Tensor) -> Tensor: ...


class CheckpointPredictor:
    """The Classifier of a checkpoint, with its test-time augmentation."""

    def __init__(self, ckpt_path: str, tta: dict | None) -> None:
        self.model = load_classifier(ckpt_path, tta)
        self.spec = self.model.spec

    @torch.no_grad()
    def probabilities(self, x: Tensor) -> Tensor:
        model = self.model
        probs = model.tta(model.view_probabilities, x) if model.tta.active else model.view_probabilities(x)
        return model.class_probabilities(probs)


class MergedViews:
    """TTA around a predictor that returns (N, C): binary merges P(class 1), as the Classifier does."""

    def __init__(self, inner: Predictor, tta: dict | None) -> None:
        self.inner, self.spec = inner, inner.spec
        self.tta = TestTimeAugmentation(**(tta or {}))
        check_model_options(self.spec, tta=tta, channels_last=False)

    def probabilities(self, x: Tensor) -> Tensor:
        if not self.tta.active:
            return self.inner.probabilities(x)
        if self.spec.num_classes == 2:
            positive = self.tta(lambda v: self.inner.probabilities(v)[:, 1], x)
            return torch.stack([1 - positive, positive], dim=1)
        return self.tta(self.inner.probabilities, x)


def predictor_for(cfg: DictConfig) -> Predictor:
    tta = to_plain(cfg.get("tta")) or None
    if cfg.get("model_path"):
        from cnn_zoo.export import ExportedPredictor

        return MergedViews(ExportedPredictor(str(cfg.model_path)), tta)
    return CheckpointPredictor(cfg.ckpt_path, tta)


def table_of(rows: list[dict], probabilities: Tensor, class_names: list[str], top_k: int) -> pd.DataFrame:
    """id columns, `predicted`, [top1, top1_prob, ...], prob_<class> for every class."""
    best = probabilities.argmax(dim=1).tolist()
    frame = pd.DataFrame(rows)
    frame["predicted"] = [class_names[i] for i in best]
    k = min(int(top_k), len(class_names))
    if k > 1:
        values, indices = probabilities.topk(k, dim=1)
        for rank in range(k):
            frame[f"top{rank + 1}"] = [class_names[i] for i in indices[:, rank].tolist()]
            frame[f"top{rank + 1}_prob"] = values[:, rank].tolist()
    for column, name in enumerate(class_names):
        frame[f"prob_{name}"] = probabilities[:, column].tolist()
    return frame


def write_table(table: pd.DataFrame, output: Path, fmt: str) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        output.write_text(json.dumps(json.loads(table.to_json(orient="records", double_precision=6)), indent=1) + "\n")
    else:
        table.to_csv(output, index=False, float_format="%.6f")


def batches(spec: DataSpec, source: RawInput) -> Iterator[tuple[list[dict], Tensor]]:
    """The kind's samples of `source` (its one reader of raw inputs), `batch_size` at a time: ids and inputs."""
    samples = spec.data_kind.samples(spec, source)
    while chunk := list(islice(samples, max(1, source.batch_size))):
        yield [s.ids for s in chunk], torch.cat([s.x for s in chunk])


def predict(cfg: DictConfig) -> pd.DataFrame:
    """Predict every sample of `cfg.input`; returns the table written to `cfg.output`."""
    L.seed_everything(cfg.seed, workers=True)
    fmt = str(cfg.get("format", "csv"))
    if fmt not in FORMATS:
        raise CnnZooError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    if not cfg.get("model_path") and not cfg.get("ckpt_path"):
        raise CnnZooError("ckpt_path is required: ckpt_path=outputs/runs/<run>/checkpoints/<name>.ckpt")
    predictor = predictor_for(cfg)
    class_names = list(predictor.spec.class_names)
    source = RawInput(
        cfg.input, cfg.get("input_column"), int(cfg.batch_size), int(cfg.num_workers), int(cfg.chunk_size)
    )
    rows, outputs = [], []
    startup_gc.resume()
    for ids, x in batches(predictor.spec, source):
        rows += ids
        outputs.append(predictor.probabilities(x).float())
    output = Path(str(cfg.output))
    output.parent.mkdir(parents=True, exist_ok=True)
    if source.unreadable:
        listing = "; ".join(f"{path} ({reason})" for path, reason in source.unreadable)
        log.warning("%d unreadable file(s) not predicted: %s", len(source.unreadable), listing)
        (output.parent / "unreadable.txt").write_text("".join(f"{p}\t{reason}\n" for p, reason in source.unreadable))
    if not rows:
        raise CnnZooError(f"nothing to predict in {cfg.input}")
    table = table_of(rows, torch.cat(outputs), class_names, int(cfg.get("top_k", 1)))
    write_table(table, output, fmt)
    log.info("%d predictions written to %s", len(table), output)
    return table


main = entry_point(predict, "predict")


if __name__ == "__main__":
    main()
