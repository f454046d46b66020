"""`python -m cnn_zoo.evaluate ckpt_path=... [tta=hflip] [data=...]`: test a checkpoint without training.

Writes `metrics.json` (plain and, with TTA, `*_tta` metrics side by side), `confusion_matrix.json` and
`confusion_matrix.png` (of the very test batches the metrics saw), `report.html` (`cnn_zoo.reporting.run_page`) to the
run folder, and (`top_losses=N`, 0 = off) the N most confident mistakes of the
plain predictions with Grad-CAM overlays for images and the most confused class pairs: `top_losses.png`,
`top_losses.md`, `most_confused.md` (and TensorBoard `test/top_losses`, `test/most_confused` with `logger=tensorboard`).
The data is the one the checkpoint was trained on unless `data=`
names another; the preprocessing (image size, normalisation) always follows the checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig
from torchmetrics.classification import MulticlassConfusionMatrix

from cnn_zoo.callbacks.inspection import ConfusionMatrixImage, TopLosses
from cnn_zoo.cli.hydra_entry import entry_point
from cnn_zoo.reporting.run_page import write_run_page
from cnn_zoo.reporting.run_record import RunRecord
from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.runtime.faults import write_json
from cnn_zoo.training.inference import datamodule_for, inference_trainer, load_classifier
from cnn_zoo.training.pipeline import scalar_metrics

log = logging.getLogger(__name__)


def save_confusion_matrix(matrix: torch.Tensor, class_names: list[str], title: str, output_dir: Path) -> Path:
    """The counts as JSON and as an image (torchmetrics' own plot, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_json(output_dir, "confusion_matrix.json", {"class_names": class_names, "matrix": matrix.tolist()})
    metric = MulticlassConfusionMatrix(num_classes=len(class_names))
    size = max(4.0, 0.6 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    metric.plot(val=matrix, ax=ax, labels=class_names)
    ax.set_title(title)
    path = output_dir / "confusion_matrix.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test `cfg.ckpt_path` on its data; returns the metrics written to `<run>/metrics.json`."""
    L.seed_everything(cfg.seed, workers=True)
    model = load_classifier(cfg.ckpt_path, to_plain(cfg.get("tta")) or None)
    spec = model.spec
    datamodule = datamodule_for(spec, cfg.get("data"))
    log.info("classes: %s", dict(enumerate(spec.class_names)))
    output_dir = Path(cfg.paths.output_dir)
    # the confusion matrix of the very batches the metrics saw (trainer.limit_test_batches limits both)
    matrix_callback = ConfusionMatrixImage(write_files=False, tta=True)
    extra: list[L.Callback] = [matrix_callback, RunRecord(command="evaluate", tested=Path(cfg.ckpt_path).name)]
    if int(cfg.get("top_losses", 0)) > 0:
        extra.append(TopLosses(max_samples=int(cfg.top_losses)))
    trainer = inference_trainer(cfg, extra_callbacks=extra)
    trainer.test(model, dataloaders=datamodule.test_dataloader())
    metrics = scalar_metrics(trainer.callback_metrics)
    if matrix_callback.last is None:
        raise CnnZooError("evaluate: the test set gave no batch (trainer.limit_test_batches=0?)")
    matrix = matrix_callback.last.long()
    views = model.tta.view_names
    title = f"test, TTA {'+'.join(views)}" if views else "test"
    image = save_confusion_matrix(matrix, list(spec.class_names), title, output_dir)
    write_json(output_dir, "metrics.json", metrics)
    log.info("metrics: %s", json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    log.info("confusion matrix (rows: true, columns: predicted): %s -> %s", matrix.tolist(), image)
    write_run_page(output_dir)
    log.info("run folder: %s", output_dir)
    return metrics


main = entry_point(evaluate, "evaluate")


if __name__ == "__main__":
    main()
