"""Benchmark: any-backbone transfer learning on cats_and_dogs_small: images per second and peak memory, frozen
(feature cache filled in epoch 1, read in epoch 2) and fine-tuned (top parameter groups), one backbone per family.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_transfer.py [--limit 32] \
        [--backbones resnet50.a1_in1k efficientnet_b0.ra_in1k convnext_tiny.fb_in22k_ft_in1k]

No pretrained weights are reachable here, so the weights are self-made: each timm model is initialised at random
(seed 0) and saved as `model.safetensors` into a temporary Hugging Face cache (HF_HOME, HF_HUB_OFFLINE=1), which
the runs then load through the real path (timm's pretrained=True from the Hub cache), with the preprocessing
its pretrained config declares (size, interpolation, crop, mean/std). Speed does not depend on the weights'
values; accuracy does, so none is reported: with the real weights, the accuracy comes from
`python -m cnn_zoo.train experiment=catsdogs_timm_finetune model.net.name=<backbone>`.

Each run is its own process (`--one`), so its peak resident memory (ru_maxrss) is its own. The runs read the first
`--limit` training images of each class (linked, not copied); validation and test are off, so the epoch times
are training only. Writes outputs/benchmarks/bench_transfer.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L

BACKBONES = ["resnet50.a1_in1k", "efficientnet_b0.ra_in1k", "convnext_tiny.fb_in22k_ft_in1k"]
MODES = {
    "frozen, cached": ["model=timm_frozen", "augmentation=none", "trainer.max_epochs=2"],
    "fine-tuned (top 2 groups)": [
        "model=timm_finetune",
        "model.net.freeze_epochs=0",
        "model.net.unfreeze_groups=2",
        "augmentation=flip",
        "trainer.max_epochs=1",
    ],
}


class TrainTimer(L.Callback):
    """Wall time of each training epoch (no validation runs in these benchmarks)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def self_made_weights(name: str, hf_home: Path) -> Path:
    """A random timm `name` as `model.safetensors` of `timm/<name>` in the Hub cache layout under `hf_home`."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text("0" * 40)
    state = {k: v.contiguous() for k, v in timm.create_model(name).state_dict().items()}
    save_file(state, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


def one(name: str, mode: str, data_root: Path, out: Path, batch_size: int) -> dict[str, Any]:
    """One run in this process: the row of the table (peak memory is this process's)."""
    from cnn_zoo.cli.config import compose_train_config
    from cnn_zoo.train import train

    overrides = [
        *MODES[mode],
        f"model.net.name={name}",
        "data=catsdogs",
        f"paths.data_dir={data_root.parent}",
        f"data.folder={data_root.name}",
        f"data.batch_size={batch_size}",
        "data.num_workers=2",
        "optimizer=adamw",
        "trainer.accelerator=cpu",
        "trainer.limit_val_batches=0",
        "+trainer.num_sanity_val_steps=0",
        "callbacks.model_checkpoint=null",
        "callbacks.early_stopping=null",
        "callbacks.confusion_matrix=null",
        "callbacks.misclassified=null",
        "callbacks.augmentation_preview=null",
        "callbacks.model_summary=null",
        "callbacks.rich_progress_bar=null",
        "+trainer.enable_progress_bar=false",
        "logger=none",
        "test=false",
    ]
    cfg = compose_train_config(overrides, out / f"{name}_{mode.split(',')[0].split()[0]}")
    timer = TrainTimer()
    train(cfg, extra_callbacks=[timer])
    images = sum(1 for p in (data_root / "train").rglob("*") if p.is_file())
    row = {
        "backbone": name,
        "mode": mode,
        "input": "x".join(str(v) for v in cfg.data.image_size),
        "train images": images,
        "epoch 1 img/s": round(images / timer.seconds[0], 1),
    }
    if len(timer.seconds) > 1:
        row["epoch 2 img/s (cached features)"] = round(images / timer.seconds[1], 1)
    row["peak RSS MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KB on Linux
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=32, help="training images per class")
    parser.add_argument("--backbones", nargs="+", default=BACKBONES)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    parser.add_argument("--one", nargs=3, metavar=("NAME", "MODE", "DATA_ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        row = one(args.one[0], args.one[1], Path(args.one[2]), args.out / "bench_transfer", args.batch_size)
        print("ROW " + json.dumps(row), flush=True)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_common import markdown_table, write_report
    from bench_transfer_speed import subset

    source = Path(os.environ.get("CNN_ZOO_DATA_DIR", "data")) / "cats_and_dogs_small"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = subset(source, Path(tmp) / "catsdogs_subset", {"train": args.limit, "validation": 2})
        hf_home = Path(tmp) / "hf"
        env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
        env.pop("HF_HUB_CACHE", None)
        for name in args.backbones:
            self_made_weights(name, hf_home)
            for mode in args.modes:
                command = [sys.executable, __file__, "--one", name, mode, str(root), "--out", str(args.out)]
                command += ["--batch-size", str(args.batch_size)]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                found = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
                if done.returncode or not found:
                    raise SystemExit(f"{name} {mode} failed:\n{done.stderr[-3000:]}")
                rows.append(json.loads(found[0]))
                print(rows[-1], flush=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    title = (
        f"Any-backbone transfer learning, cats_and_dogs_small ({2 * args.limit} training images), batch "
        f"{args.batch_size}, CPU, self-made (random) weights through the Hugging Face cache"
    )
    notes = [
        "Images per second of training only (no validation); epoch 2 of the frozen runs reads cached features.",
        "Accuracy with the real weights: python -m cnn_zoo.train experiment=catsdogs_timm_finetune "
        "model.net.name=<backbone> (and model=timm_frozen for feature extraction).",
    ]
    write_report(args.out, "bench_transfer", title, markdown_table(rows, columns), rows, notes)


if __name__ == "__main__":
    main()
