"""Benchmark: seconds per training epoch of VGG16 and ResNet50 at 180x180 on real cats/dogs, on this machine.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_transfer_speed.py [--per-class 128] [--epochs 2]

Three ways per backbone, through the normal pipeline (random weights: speed does not depend on their values):
frozen with the feature cache (epoch 1 fills it, later epochs read it), frozen without it, and fine-tuned (the top
block trained, as conf/model/*_finetune.yaml after its frozen epochs).

A full epoch (2,000 training images) of a frozen VGG16 takes many minutes on a 2-core CPU, so the runs read a
subset: the first `--per-class` training and `--val-per-class` validation images of each class of
cats_and_dogs_small, linked (not copied) into a temporary folder. Per-image cost dominates, so the table also
gives the time scaled linearly to the 2,000-image epoch, marked as extrapolated. Writes
outputs/benchmarks/transfer_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench_common import markdown_table, run_experiment, write_report

FULL_TRAIN = 2000
VARIANTS = {
    "frozen, cached": ["model.net.mode=frozen", "model.net.cache_features=true"],
    "frozen, uncached": ["model.net.mode=frozen", "model.net.cache_features=false"],
    "fine-tuned (top block)": ["model.net.mode=finetune", "model.net.freeze_epochs=0", "model.net.unfreeze_blocks=1"],
}


def subset(source: Path, target: Path, per_class: dict[str, int]) -> Path:
    """`target/<split>/<class>/` holding symbolic links to the first images of `source` (sorted names)."""
    for split, count in per_class.items():
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            link_dir = target / split / class_dir.name
            link_dir.mkdir(parents=True, exist_ok=True)
            for image in sorted(class_dir.iterdir())[:count]:
                (link_dir / image.name).symlink_to(image)
    return target


def run(arch: str, variant: str, data_root: Path, epochs: int, out: Path, n_train: int) -> dict:
    overrides = [
        f"model={arch}_frozen",
        "model.net.weights=null",
        *VARIANTS[variant],
        "data=catsdogs",
        f"paths.data_dir={data_root.parent}",
        f"data.folder={data_root.name}",
        "data.image_size=180",
        "data.normalization=imagenet",
        "data.batch_size=32",
        "augmentation=none",
        "optimizer=rmsprop",
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu",
        "callbacks.model_checkpoint=null",
        "callbacks.early_stopping=null",
        "callbacks.confusion_matrix=null",
        "callbacks.misclassified=null",
        "callbacks.augmentation_preview=null",
        "callbacks.model_summary=null",
        "logger=none",
        "test=false",
    ]
    slug = "".join(c if c.isalnum() else "_" for c in variant)
    _, timer = run_experiment(overrides, out / f"{arch}_{slug}")
    first, later = timer.durations[0], timer.durations[1:]
    steady = sum(later) / len(later) if later else first
    row = {
        "backbone": arch,
        "variant": variant,
        "images": n_train,
        "epoch 1 s": round(first, 1),
        "later epochs s": round(steady, 1),
        "s/epoch, 2000 images (extrapolated)": round(steady * FULL_TRAIN / n_train, 0),
        "epoch 1, 2000 images (extrapolated)": round(first * FULL_TRAIN / n_train, 0),
    }
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=128, help="training images per class")
    parser.add_argument("--val-per-class", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--archs", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    args = parser.parse_args()
    source = Path(os.environ.get("CNN_ZOO_DATA_DIR", "data")) / "cats_and_dogs_small"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = subset(
            source, Path(tmp) / "catsdogs_subset", {"train": args.per_class, "validation": args.val_per_class}
        )
        for arch in args.archs:
            for variant in VARIANTS:
                rows.append(run(arch, variant, root, args.epochs, args.out / "transfer_speed", 2 * args.per_class))
    columns = list(rows[0])
    speedups = []
    for arch in args.archs:
        by = {r["variant"]: r for r in rows if r["backbone"] == arch}
        ratio = by["frozen, uncached"]["later epochs s"] / by["frozen, cached"]["later epochs s"]
        speedups.append(f"{arch}: cached features make epochs 2+ {ratio:.0f}x faster than uncached")
    title = (
        "Transfer-learning epoch times, 180x180, batch 32, CPU; measured on "
        f"{2 * args.per_class} training images ({args.per_class} per class) of cats_and_dogs_small, the 2,000-image "
        "columns scale that linearly"
    )
    write_report(args.out, "transfer_speed", title, markdown_table(rows, columns), rows, speedups)


if __name__ == "__main__":
    main()
