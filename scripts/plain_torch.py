"""The reference for framework overhead: cnn_zoo's data, network and optimizer driven by a plain PyTorch loop.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/plain_torch.py --epochs 3 -- experiment=mnist_cnn

Composes the same config as `python -m cnn_zoo.train <overrides>` and builds the same datamodule, network and
optimizer, then trains with nothing else: no Lightning, callbacks, logger or metrics objects; float32 unless
`--bf16` (autocast, with channels_last for images); in the config's `model.channels_last` layout, with its
`flush_denormal`, and the OpenMP waiting train's entry point chooses: the CPU settings train uses, so what is left
to compare is the framework. Validates every epoch and tests at the end, as train does.
Prints `BENCH {json}`: time stamps (first training step, each epoch's start, end and CPU seconds), accuracies.
"""

from __future__ import annotations

# isort: off
from cnn_zoo.runtime import memory, performance  # no torch at the top: main() sets OpenMP before torch loads
# isort: on
import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads in main(), once the config has told the OpenMP choice about DataLoader workers
    import torch
    from torch import nn


def loss_and_hits(net: nn.Module, x: torch.Tensor, y: torch.Tensor, binary: bool) -> tuple[torch.Tensor, int]:
    import torch.nn.functional as F

    logits = net(x)
    if binary:
        logits = logits.squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y.float())
        return loss, int(((logits > 0).long() == y).sum())
    loss = F.cross_entropy(logits.float(), y)
    return loss, int((logits.argmax(1) == y).sum())


def accuracy(net: nn.Module, loader: torch.utils.data.DataLoader, binary: bool, autocast: Callable) -> float:
    import torch

    net.eval()
    hits = total = 0
    device = next(net.parameters()).device
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with autocast():
                hits += loss_and_hits(net, x, y, binary)[1]
            total += len(y)
    return hits / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (+ channels_last for images)")
    parser.add_argument("overrides", nargs="*", help="cnn_zoo config overrides (the data, model and optimizer)")
    args = parser.parse_args()
    performance.set_openmp_defaults()  # as train's entry point does
    memory.keep_freed_memory()

    from cnn_zoo.cli.config import compose_train_config

    cfg = compose_train_config(args.overrides, tempfile.mkdtemp(prefix="plain_torch_"))
    performance.expect_loader_workers(int(cfg.data.get("num_workers") or 0))  # as train does, before torch loads
    import hydra.utils
    import torch

    from cnn_zoo.models import build_net
    from cnn_zoo.runtime.config_values import to_plain

    print(performance.openmp_choice, flush=True)  # the same OpenMP waiting as train chooses for these overrides
    print(performance.flush_denormals(bool(cfg.get("flush_denormal", True))), flush=True)  # the same math as train
    torch.manual_seed(int(cfg.seed))
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    spec = datamodule.spec
    accelerator = str(cfg.trainer.accelerator)
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    binary = spec.num_classes == 2
    net = build_net(to_plain(cfg.model.net), spec).to(device)
    image = spec.kind == "image"
    channels_last = image and (args.bf16 or bool(cfg.model.get("channels_last", False)))  # as train lays it out
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = hydra.utils.instantiate(cfg.optimizer)([p for p in net.parameters() if p.requires_grad])

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    stamps: dict = {"epochs": [], "first_step": None}
    val_acc = []
    for _ in range(args.epochs):
        start, cpu = time.time(), time.process_time()
        net.train()
        for x, y in datamodule.train_dataloader():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if stamps["first_step"] is None:
                stamps["first_step"] = time.time()
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                loss, _ = loss_and_hits(net, x, y, binary)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val_acc.append(accuracy(net, datamodule.val_dataloader(), binary, autocast))
        stamps["epochs"].append([start, time.time(), time.process_time() - cpu])
        print(f"epoch {len(val_acc)}: {stamps['epochs'][-1][1] - start:.2f}s val/acc={val_acc[-1]:.4f}", flush=True)
    datamodule.setup("test")
    test_acc = accuracy(net, datamodule.test_dataloader(), binary, autocast)
    print("BENCH " + json.dumps({**stamps, "val_acc": val_acc, "test_acc": test_acc}), flush=True)


if __name__ == "__main__":
    main()
