"""Benchmark: transfer learning proven on real data, with weights we make ourselves (no ImageNet weights here).

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_transfer_mnist.py [--pretrain-per-class 1000] [--epochs 30]

1. Pretrain a backbone on real MNIST digits 0-4 through the normal pipeline (`TransferNet` with `weights=null`,
   everything trainable) and keep its best checkpoint.
2. On digits 5-9 with 50 (then 10) labelled images per class (`data.train_per_class`; the datamodule holds 20% of
   them out for validation), train the same network three ways through `model.net.weights_path=<that checkpoint>`:
   frozen (feature extraction, cached features), fine-tuned (frozen epochs, then all blocks at a lower rate),
   and from scratch (`weights=null`). All three test on the full MNIST test digits 5-9.

The backbone is a small ResNet from timm's builder (`resnet18` with one block per stage, channels 32-256,
`output_stride=8` so 28x28 digits keep a 4x4 map, `in_chans=1`) under Flatten-Dense(128)-Dropout(0.5)-Dense(5), as
Keras' mnist_transfer_cnn example: the same code path as ResNet50/VGG16, cheap enough for a 2-core CPU.
Prints a markdown table, writes it with the raw figures to outputs/benchmarks/transfer_mnist.{md,json}.
Transfer must clearly beat scratch.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

from bench_common import markdown_table, run_experiment, write_report

BACKBONE = [
    "model=resnet50_frozen",
    "model.net.arch=resnet18",
    "model.net.source=timm",
    "+model.net.backbone_kwargs.layers=[1,1,1,1]",
    "+model.net.backbone_kwargs.channels=[32,64,128,256]",
    "+model.net.backbone_kwargs.stem_width=32",
    "+model.net.backbone_kwargs.output_stride=8",
    "model.net.pool=flatten",
    "model.net.dense=[128]",
    "model.net.dropout=0.5",
    "optimizer=adam",
    "optimizer.lr=1e-3",
    "logger=csv",
    "callbacks.early_stopping.patience=15",
]
TARGET = ["data=mnist", "data.digits=[5,6,7,8,9]", "data.batch_size=32"]
RUNS = {
    "scratch": [
        "model.net.weights=null",
        "model.net.mode=finetune",
        "model.net.backbone_lr_scale=1.0",
        "model.net.batchnorm=train",
    ],
    "frozen": ["model.net.mode=frozen"],
    "fine-tuned": [
        "model.net.mode=finetune",
        "model.net.freeze_epochs=3",
        "model.net.unfreeze_blocks=null",
        "model.net.backbone_lr_scale=1.0",
        "model.net.batchnorm=train",
    ],
}


def pretrain(out: Path, per_class: int, epochs: int) -> tuple[Path, dict]:
    run_dir = out / "pretrain_digits_0-4"
    overrides = [
        *BACKBONE,
        "data=mnist",
        "data.digits=[0,1,2,3,4]",
        f"data.train_per_class={per_class or 'null'}",
        "data.batch_size=64",
        "model.net.weights=null",
        "model.net.mode=finetune",
        "model.net.backbone_lr_scale=1.0",
        "model.net.batchnorm=train",
        f"trainer.max_epochs={epochs}",
    ]
    started = time.perf_counter()
    metrics, timer = run_experiment(overrides, run_dir)
    (best,) = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    row = {
        "run": f"pretrain 0-4 ({f'{per_class}/class' if per_class else 'all'})",
        "test_acc": metrics["test/acc"],
        "epochs": len(timer.durations),
        "s/epoch": timer.mean,
        "min": (time.perf_counter() - started) / 60,
    }
    return best, row


def transfer(out: Path, name: str, weights: Path, epochs: int, per_class: int) -> dict:
    overrides = [
        *BACKBONE,
        *TARGET,
        f"data.train_per_class={per_class}",
        *([] if name == "scratch" else [f"model.net.weights_path={weights}"]),  # weights_path wins over weights=null
        f"trainer.max_epochs={epochs}",
        *RUNS[name],
    ]
    started = time.perf_counter()
    metrics, timer = run_experiment(overrides, out / f"digits_5-9_{per_class}_{name}")
    return {
        "run": f"5-9, {per_class}/class: {name}",
        "test_acc": metrics["test/acc"],
        "epochs": len(timer.durations),
        "s/epoch": timer.mean,
        "min": (time.perf_counter() - started) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-per-class", type=int, default=0, help="0: every training image of digits 0-4")
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40, help="max epochs of each transfer run")
    parser.add_argument("--per-class", type=int, nargs="+", default=[50, 10], help="labelled digits 5-9 per class")
    parser.add_argument("--pretrained", type=Path, help="reuse this pretraining checkpoint instead of pretraining")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/transfer_mnist"))
    args = parser.parse_args()
    out = args.out / f"{datetime.now():%Y%m%d_%H%M%S}"  # a fresh folder: no stale checkpoint is ever picked up
    if args.pretrained:
        best, rows = args.pretrained, [{"run": f"pretrained: {args.pretrained}"}]
    else:
        best, row = pretrain(out, args.pretrain_per_class, args.pretrain_epochs)
        rows = [row]
    columns = ["run", "test_acc", "test error vs scratch", "epochs", "s/epoch", "min"]
    verdicts = []
    for per_class in args.per_class:
        trio = [transfer(out, name, best, args.epochs, per_class) for name in RUNS]
        scratch = trio[0]["test_acc"]
        for r in trio:
            r["test error vs scratch"] = f"{(1 - r['test_acc']) / (1 - scratch):.2f}x"
        rows += trio
        wins = all(r["test_acc"] >= scratch + 0.03 for r in trio[1:])
        verdicts.append(f"{per_class}/class: both transfers beat scratch by >= 3 points: {'yes' if wins else 'NO'}")
        print(markdown_table(rows, columns), flush=True)
    write_report(
        args.out.parent, "transfer_mnist", "MNIST transfer benchmark", markdown_table(rows, columns), rows, verdicts
    )


if __name__ == "__main__":
    main()
