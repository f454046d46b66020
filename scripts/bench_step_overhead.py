"""Framework overhead per training step, paired in one process: cnn_zoo's Lightning steps against plain steps.

    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_step_overhead.py -- experiment=mnist_cnn
    CNN_ZOO_DATA_DIR=../shared/data python scripts/bench_step_overhead.py -- experiment=mnist_cnn fast=false

On a shared VM the same process runs 30-60% faster or slower from one minute to the next, with no time stolen by
the hypervisor to show for it, so two processes timed one after the other cannot resolve a 5% framework cost.
Here `python -m cnn_zoo.train`'s own pipeline (the config's callbacks, logger and precision) trains, and a
callback interleaves, every `--block` steps, as many plain steps (scripts/plain_torch.py's loss, zero_grad,
backward, step, under the same autocast) on a copy of the network with its own optimizer and the same loader's
batches. Each pair of blocks shares the machine's speed of that moment; the median of the blocks' ratios is the
framework's overhead. Prints each block's ms/step and the median ratio.

`--bare` trains a bare LightningModule instead of cnn_zoo's pipeline: the same network, data, loss, optimizer and
precision, with no callbacks, logger, checkpoints, metrics, summary or progress bar. That is the floor of any
Lightning run of this model: what is left between it and cnn_zoo is cnn_zoo's own per-step cost.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import statistics
import tempfile
import time

import hydra.utils
import lightning as L
import torch
from omegaconf import DictConfig

from cnn_zoo.cli.config import compose_train_config
from cnn_zoo.runtime import performance
from cnn_zoo.train import train
from cnn_zoo.training.pipeline import build_classifier, build_datamodule
from plain_torch import loss_and_hits


class PairedBlocks(L.Callback):
    """Times cnn_zoo's steps between its own batch starts and runs a block of plain steps at every `block`-th."""

    def __init__(self, optimizer_config: object, block: int, blocks: int, label: str = "cnn_zoo") -> None:
        self.optimizer_config, self.block, self.blocks, self.label = optimizer_config, block, blocks, label
        self.zoo_ms: list[float] = []
        self.plain_ms: list[float] = []
        self.block_start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.net = copy.deepcopy(pl_module.net)
        self.optimizer = hydra.utils.instantiate(self.optimizer_config)([p for p in self.net.parameters()])
        self.loader = trainer.datamodule.train_dataloader()
        self.batches = iter(self.loader)
        self.binary = bool(pl_module.binary)
        self.channels_last = bool(pl_module.hparams.get("channels_last"))
        self.bf16 = "bf16" in str(trainer.precision)

    def plain_steps(self) -> float:
        """One block of the plain loop's steps; its ms per step."""
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        start = time.perf_counter()
        for _ in range(self.block):
            batch = next(self.batches, None)
            if batch is None:  # a short epoch (LeNet's 430 batches of 128): the plain loop starts another
                self.batches = iter(self.loader)
                batch = next(self.batches)
            x, y = batch[0], batch[1]
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss, _ = loss_and_hits(self.net, x, y, self.binary)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return (time.perf_counter() - start) * 1000 / self.block

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, index: int) -> None:
        if index % self.block or len(self.zoo_ms) >= self.blocks:
            return
        if index > 0:
            self.zoo_ms.append((time.perf_counter() - self.block_start) * 1000 / self.block)
            self.plain_ms.append(self.plain_steps())
        else:
            self.plain_steps()  # warm-up: the first block of each carries one-off allocations
        self.block_start = time.perf_counter()

    def report(self) -> str:
        if not self.zoo_ms:
            return "no pair of blocks timed: the epoch has fewer than two blocks of batches (lower --block)"
        ratios = [z / p for z, p in zip(self.zoo_ms, self.plain_ms, strict=True)]
        return "\n".join([
            f"{self.label + ' ms/step:':16} " + " ".join(f"{v:.2f}" for v in self.zoo_ms),
            f"{'plain ms/step:':16} " + " ".join(f"{v:.2f}" for v in self.plain_ms),
            f"median: {self.label} {statistics.median(self.zoo_ms):.2f}, plain {statistics.median(self.plain_ms):.2f} "
            f"ms/step; {self.label}/plain median of the {len(ratios)} paired blocks {statistics.median(ratios):.3f} "
            f"(range {min(ratios):.3f}-{max(ratios):.3f})",
        ])  # fmt: skip


class BareLightning(L.LightningModule):
    """cnn_zoo's network, loss and optimizer in the least a LightningModule can be."""

    def __init__(self, net: torch.nn.Module, optimizer_config: object, binary: bool, channels_last: bool) -> None:
        super().__init__()
        self.net, self.optimizer_config, self.binary = net, optimizer_config, binary
        self.save_hyperparameters({"channels_last": channels_last})

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        if self.hparams["channels_last"] and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return loss_and_hits(self.net, x, y, self.binary)[0]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return hydra.utils.instantiate(self.optimizer_config)([p for p in self.net.parameters()])


def train_bare(cfg: DictConfig, paired: PairedBlocks) -> None:
    """The config's data, network, optimizer, precision and CPU settings, trained by a bare Lightning Trainer."""
    performance.flush_denormals(bool(cfg.get("flush_denormal", True)))
    L.seed_everything(cfg.seed)
    datamodule = build_datamodule(cfg)
    zoo = build_classifier(cfg, datamodule.spec)
    model = BareLightning(zoo.net, cfg.optimizer, bool(zoo.binary), bool(zoo.hparams.get("channels_last")))
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, precision=cfg.trainer.precision, max_epochs=1,
        limit_train_batches=cfg.trainer.limit_train_batches, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[paired], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=int, default=40, help="steps per block")
    parser.add_argument("--blocks", type=int, default=8, help="pairs of blocks timed")
    parser.add_argument("--bare", action="store_true", help="a bare LightningModule and Trainer instead of cnn_zoo")
    parser.add_argument("overrides", nargs="*", help="cnn_zoo config overrides (e.g. experiment=mnist_cnn)")
    args = parser.parse_args()
    steps = args.block * (args.blocks + 1) + 1
    overrides = [*args.overrides, "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}",
                 "trainer.limit_val_batches=1", "test=false"]  # fmt: skip
    cfg = compose_train_config(overrides, tempfile.mkdtemp(prefix="step_overhead_"))
    paired = PairedBlocks(cfg.optimizer, args.block, args.blocks, label="bare Lightning" if args.bare else "cnn_zoo")
    logging.disable(logging.WARNING)  # the epoch's lines and Lightning's notices are not this measurement
    if args.bare:
        train_bare(cfg, paired)
    else:
        train(cfg, extra_callbacks=[paired])
    way = "a bare LightningModule" if args.bare else "cnn_zoo's pipeline"
    print(f"{' '.join(args.overrides)}, {way}: {args.blocks} pairs of {args.block}-step blocks", flush=True)
    print(paired.report(), flush=True)


if __name__ == "__main__":
    main()
