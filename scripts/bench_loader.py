"""Is the DataLoader ever the bottleneck? Images per second the training loader delivers (decode + augment +
collate) beside the images per second the model trains on, for the same config.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_loader.py -- experiment=catsdogs_aug
    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_loader.py --workers 0 1 2 -- data=catsdogs augmentation=none

The loader is timed alone (its batches are iterated and dropped) with each `--workers` count; the model is timed
alone on batches already in memory (forward, loss, backward, optimizer step, in the run's precision and memory
format). Training at full speed needs the loader's rate above the model's. Writes `<out>/loader.{md,json}`.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import hydra.utils
import torch

from bench_common import machine, markdown_table, write_report
from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.runtime.config_values import to_plain
from cnn_zoo.training.pipeline import build_classifier, build_datamodule


def loader_rate(datamodule, workers: int, batches: int) -> float:
    """Training images per second from the training loader with `workers` worker processes."""
    datamodule.num_workers = workers
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # workers started, first batch decoded: not part of the steady rate
    seen, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            x, _ = next(iterator)
        except StopIteration:
            break
        seen += len(x)
    return seen / (time.perf_counter() - start)


def model_rate(cfg, datamodule, steps: int) -> float:
    """Training images per second of the network alone, on the loader's first batches held in memory."""
    classifier = build_classifier(cfg, datamodule.spec)
    net = classifier.net  # already channels_last when the config says so
    batches = [b for _, b in zip(range(3), datamodule.train_dataloader(), strict=False)]
    channels_last = bool(cfg.model.get("channels_last", False))
    optimizer = hydra.utils.instantiate(cfg.optimizer)([p for p in net.parameters() if p.requires_grad])
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    net.train()
    seen, start = 0, None
    for step in range(steps + 2):
        x, y = batches[step % len(batches)]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = classifier.loss(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == 1:  # two warm-up steps
            start = time.perf_counter()
        elif step > 1:
            seen += len(x)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=30, help="loader batches timed per worker count")
    parser.add_argument("--steps", type=int, default=10, help="model training steps timed")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"))
    parser.add_argument("overrides", nargs="*", default=["experiment=catsdogs_aug"])
    args = parser.parse_args()

    cfg = compose_train_config(args.overrides, tempfile.mkdtemp(prefix="bench_loader_"))
    torch.manual_seed(int(cfg.seed))
    datamodule = build_datamodule(cfg)
    rows = []
    for workers in args.workers:
        rate = loader_rate(datamodule, workers, args.batches)
        rows.append({"what": f"training loader, num_workers={workers}", "images/s": round(rate, 1)})
        print(rows[-1], flush=True)
    rate = model_rate(cfg, datamodule, args.steps)
    rows.append({"what": f"model training step ({cfg.trainer.precision})", "images/s": round(rate, 1)})
    print(rows[-1], flush=True)
    title = f"Loader vs model, {' '.join(args.overrides)} (batch {datamodule.batch_size})"
    net = to_plain(cfg.model.net).get("_target_", "?").rsplit(".", 1)[-1]
    notes = [f"Machine: {machine()}.", f"Network: {net}; augmentation: {bool(to_plain(cfg.get('augmentation')))}."]
    write_report(args.out, "loader", title, markdown_table(rows, ["what", "images/s"]), rows, notes)


if __name__ == "__main__":
    main()
