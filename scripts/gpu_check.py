"""A prepared GPU check (issue 37): three models on the fast path, the loader's rate beside each model's.

    bash scripts/gpu_check.sh                     # on a CUDA machine: under 5 minutes
    python scripts/gpu_check.py --device cpu --steps 3 --batches 2 --images 32 --batch-size 4   # CPU smoke run

Cases, each a real `cnn_zoo.train.train` run of `--steps` training steps with `fast=true` (bf16 autocast and
channels_last on a GPU with bf16 units; the CPU smoke run stays float32):
- mnist_cnn on MNIST (in memory);
- the course's small CNN on cats/dogs at 180x180 with the decoded disk cache (`data.cache=disk`) and
  flip/rotate/zoom augmentation on the device (`augmentation.device=auto`: uint8 batches, augmented there);
- ResNet50 fine-tuning at 180x180 with random weights (`model.net.load_weights=false`, no download), same data.
For each it prints the training steps' images/s, the GPU's utilisation (mean of `nvidia-smi` samples during
the steps) and memory (`nvidia-smi` peak and `torch.cuda.max_memory_allocated`), and the training loader's
own images/s (iterated alone, its device half included). Data: `$CNN_ZOO_DATA_DIR` (MNIST/raw,
cats_and_dogs_small), else small generated stand-ins under a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CALLBACKS_OFF = ("model_checkpoint", "last_checkpoint", "early_stopping", "rich_progress_bar", "model_summary",
                 "confusion_matrix", "misclassified", "augmentation_preview", "lr_monitor")  # fmt: skip


class GpuSampler:
    """`nvidia-smi` utilisation and memory samples every 0.2 s while `active`; nothing without nvidia-smi."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.active = False
        self.stop = threading.Event()
        self.available = shutil.which("nvidia-smi") is not None
        self.thread = threading.Thread(target=self.loop, daemon=True)
        if self.available:
            self.thread.start()

    def loop(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        while not self.stop.is_set():
            if self.active:
                try:
                    util, memory = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout.split(",")
                    self.samples.append((float(util), float(memory)))
                except (ValueError, subprocess.SubprocessError, OSError):
                    pass
            self.stop.wait(0.2)

    def summary(self) -> dict[str, Any]:
        samples, self.samples = self.samples, []
        if not samples:
            return {"gpu_util_pct": None, "gpu_mem_mib": None}
        return {
            "gpu_util_pct": round(sum(u for u, _ in samples) / len(samples), 1),
            "gpu_mem_mib": max(m for _, m in samples),
        }


def clock_callback(sampler: GpuSampler) -> Any:
    import lightning as L

    class Clock(L.Callback):
        """Times training steps after two warm-up steps, the GPU sampled meanwhile."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.images = 0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, index: int) -> None:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
            if len(self.times) == 3:
                sampler.active = True
            if len(self.times) > 3:
                self.images += len(batch[1])

        def on_train_end(self, trainer: Any, module: Any) -> None:
            sampler.active = False

        def rate(self) -> float:
            return self.images / (self.times[-1] - self.times[2]) if len(self.times) > 3 else float("nan")

    return Clock()


def loader_rate(cfg: Any, batches: int, device: str) -> float:
    """Images/s of the training loader alone, moved to `device` and through the datamodule's device half."""
    import torch

    from cnn_zoo.training.pipeline import build_datamodule

    datamodule = build_datamodule(cfg)
    datamodule.augmentation_device = "accelerator" if getattr(datamodule, "device_pipeline", None) else "cpu"
    loader = datamodule.train_dataloader()
    iterator, seen = iter(loader), 0
    start = None
    for step in range(batches + 1):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        batch = [b.to(device, non_blocking=True) if hasattr(b, "to") else b for b in batch]
        batch = datamodule.on_after_batch_transfer(batch, 0)
        if device == "cuda":
            torch.cuda.synchronize()
        if step == 0:
            start = time.perf_counter()
        else:
            seen += len(batch[1])
    return seen / (time.perf_counter() - start)


def data_roots(images: int) -> tuple[Path, list[str]]:
    """The data folder and the cats/dogs folder's name: the real ones when present, else generated."""
    from cnn_zoo.runtime.config_values import user_cache_dir

    real = Path(__import__("os").environ.get("CNN_ZOO_DATA_DIR", "data"))
    if (real / "MNIST" / "raw").is_dir() and (real / "cats_and_dogs_small" / "train").is_dir():
        return real, []
    sys.path.insert(0, str(ROOT))
    from tests.fixtures import make_image_folder, make_mnist

    made = Path(tempfile.mkdtemp(prefix="gpu_check_data_"))
    make_mnist(made, n_train=max(images, 600), n_test=200)
    make_image_folder(made / "cats_and_dogs_small", layout="folders", per_class=max(images // 2, 16), odd_files=False)
    print(f"generated stand-in data under {made} (no MNIST/cats_and_dogs_small in {real}); cache {user_cache_dir()}")
    return made, ["data.val_size=100"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--steps", type=int, default=40, help="training steps per model (2 warm-up steps first)")
    parser.add_argument("--batches", type=int, default=40, help="loader batches timed per model")
    parser.add_argument("--images", type=int, default=2000, help="generated images when the real data is absent")
    parser.add_argument("--batch-size", type=int, default=64, help="cats/dogs batch size (mnist_cnn: its own 64)")
    parser.add_argument("--only", nargs="*", help="case names to run (mnist_cnn small_cnn resnet50)")
    args = parser.parse_args()

    import torch

    from cnn_zoo.cli.config import compose_train_config
    from cnn_zoo.train import train

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for the smoke check")
    data_dir, mnist_extra = data_roots(args.images)
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    common = [
        f"paths.data_dir={data_dir}",
        f"trainer.accelerator={accelerator}",
        "fast=true" if args.device == "cuda" else "fast=false",
        f"+trainer.max_steps={args.steps}",
        "trainer.limit_val_batches=0",
        "+trainer.num_sanity_val_steps=0",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_checkpointing=false",
        *(f"callbacks.{c}=null" for c in CALLBACKS_OFF),
        "logger=none",
        "test=false",
    ]
    images = [
        f"data.batch_size={args.batch_size}",
        "data.image_size=180",
        "data.cache=disk",
        "augmentation=flip_rotate_zoom",
        "augmentation.device=auto",
    ]
    cases = {
        "mnist_cnn": ["experiment=mnist_cnn", "data.download=false", *mnist_extra],
        "small_cnn": ["experiment=catsdogs_scratch", "model=small_cnn", *images],
        "resnet50": [
            "experiment=catsdogs_resnet50_finetune",
            "model.net.weights=null",  # random weights: nothing to download
            "model.net.freeze_epochs=0",
            "model.net.unfreeze_blocks=null",
            "model.net.cache_features=false",
            *images,
        ],
    }
    sampler = GpuSampler()
    rows = []
    for name, overrides in cases.items():
        if args.only and name not in args.only:
            continue
        cfg = compose_train_config([*overrides, *common], Path(tempfile.mkdtemp(prefix=f"gpu_check_{name}_")))
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        clock = clock_callback(sampler)
        started = time.perf_counter()
        train(cfg, extra_callbacks=[clock])
        row = {
            "model": name,
            "batch": int(cfg.data.batch_size),
            "precision": str(cfg.trainer.precision),
            "train_img_s": round(clock.rate(), 1),
            **sampler.summary(),
            "torch_max_alloc_mib": round(torch.cuda.max_memory_allocated() / 2**20) if args.device == "cuda" else None,
            "loader_img_s": round(loader_rate(cfg, args.batches, args.device), 1),
            "run_s": round(time.perf_counter() - started, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    sampler.stop.set()
    keys = list(rows[0]) if rows else []
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
