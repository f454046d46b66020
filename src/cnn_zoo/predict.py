"""`python -m cnn_zoo.predict ckpt_path=... input=<image or folder> [tta=hflip]`: class probabilities as CSV.

Needs nothing but the checkpoint: class names, image size and normalisation come from its data facts, and the
images go through the datamodule's own evaluation transform (`eval_transform(facts)`). Unreadable files are
listed in one warning (and in `unreadable.txt`); the rest are predicted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from cnn_zoo.config import CONFIG_DIR, to_plain
from cnn_zoo.data.image_folder import ImageFiles, scan
from cnn_zoo.data.transforms import eval_transform
from cnn_zoo.errors import CnnZooError, user_errors
from cnn_zoo.inference import image_files, inference_trainer, load_classifier

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> pd.DataFrame:
    """Predict every image of `cfg.input`; returns the table written to `cfg.output`."""
    L.seed_everything(cfg.seed, workers=True)
    model = load_classifier(cfg.ckpt_path, to_plain(cfg.get("tta")) or None)
    facts = model.hparams.data
    class_names = list(facts["class_names"])
    transform = eval_transform(facts)
    files = image_files(cfg.input)
    trainer = inference_trainer(cfg)
    chunk_size = max(1, int(cfg.chunk_size))
    rows, unreadable = [], []
    for start in range(0, len(files), chunk_size):
        chunk = [(path, -1) for path in files[start : start + chunk_size]]
        good, arrays, bad = scan(chunk, transform.decode, int(cfg.num_workers))
        unreadable += bad
        if not good:
            continue
        dataset = ImageFiles(good, transform, cache=np.stack(arrays))
        loader = DataLoader(dataset, batch_size=int(cfg.batch_size))
        probabilities = torch.cat(trainer.predict(model, dataloaders=loader))
        for (path, _), probs in zip(good, probabilities.tolist(), strict=True):
            best = max(range(len(class_names)), key=probs.__getitem__)
            rows.append(
                {"path": str(path), "predicted": class_names[best]}
                | {f"prob_{name}": p for name, p in zip(class_names, probs, strict=True)}
            )
    output = Path(str(cfg.output))
    output.parent.mkdir(parents=True, exist_ok=True)
    if unreadable:
        listing = "; ".join(f"{path} ({reason})" for path, reason in unreadable)
        log.warning("%d unreadable image file(s) not predicted: %s", len(unreadable), listing)
        (output.parent / "unreadable.txt").write_text("".join(f"{path}\t{reason}\n" for path, reason in unreadable))
    if not rows:
        raise CnnZooError(f"none of the {len(files)} image file(s) under {cfg.input} could be read")
    table = pd.DataFrame(rows, columns=["path", "predicted", *(f"prob_{name}" for name in class_names)])
    table.to_csv(output, index=False, float_format="%.6f")
    log.info("%d predictions written to %s", len(table), output)
    return table


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    with user_errors():
        predict(cfg)


if __name__ == "__main__":
    main()
