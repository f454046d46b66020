"""Exact resume: the random-number states and the data position travel in every checkpoint.

Lightning's checkpoint restores weights, optimizer, schedulers and loop counters, but not the random state, so a
resumed run shuffles and drops out differently from the run it continues. `ExactResume` (a callback, in
`conf/callbacks/exact_resume.yaml`) stores the Python, NumPy, torch CPU and CUDA states of every rank and the
number of batches already trained in the current epoch; on resume it restores them when training starts, and a
mid-epoch checkpoint (`callbacks.last_checkpoint.every_n_train_steps`) makes the training sampler skip the
batches already seen, on every rank under DDP too (the sampler is the `DistributedSampler` Lightning keeps). The
data order itself is a function of (seed, epoch), and a random augmentation's draws for a sample a function of
(seed, epoch, sample index) (`cnn_zoo.data.sampling`), whatever the number of DataLoader workers; DataLoader
iterators draw from their own generator, so nothing else moves the global random state between the checkpoint
and the next batch: with `trainer.deterministic=true`, the resumed run equals the uninterrupted one.

Everything is stored as plain values and tensors: checkpoints keep loading with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed

from cnn_zoo.data.sampling import EpochRandomSampler
from cnn_zoo.runtime.lightning_compat import batches_processed_in_epoch

log = logging.getLogger(__name__)


def capture_rng() -> dict[str, Any]:
    """This process's random states as plain values (NumPy's key as a tensor: no pickled arrays)."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["name"], keys, numpy["position"], numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_from_ranks(value: Any) -> list[Any]:
    """`value` of every rank, in rank order (one element without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    values: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def train_samplers(trainer: L.Trainer) -> list[Any]:
    """The samplers of the training loader(s): one loader, or a list or dict of them."""
    loaders = trainer.train_dataloader
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    flat = list(loaders) if isinstance(loaders, list | tuple) else [loaders]
    return [getattr(loader, "sampler", None) for loader in flat]


class ExactResume(L.Callback):
    """Saves the random states of every rank and the epoch's batch position; restores them on resume."""

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # Called on every rank while a checkpoint is assembled (rank zero writes it): a collective.
        return {"rng": gather_from_ranks(capture_rng()), "batches_in_epoch": self.batches_in_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = state_dict

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.trainer = trainer

    @property
    def batches_in_epoch(self) -> int:
        """Batches of the current epoch already trained (0 at an epoch's end: the epoch is complete)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        # during on_train_batch_end (where step checkpoints are saved) the batch counts as processed, not completed
        done = batches_processed_in_epoch(trainer)
        return 0 if done >= trainer.num_training_batches else done

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pending is None:
            return
        state, self.pending = self.pending, None
        states = state["rng"]
        if len(states) != trainer.world_size:
            log.warning(
                "the checkpoint holds the random states of %d processes, this run has %d: the resumed run "
                "continues, but not exactly as the interrupted one would have",
                len(states),
                trainer.world_size,
            )
        restore_rng(states[trainer.global_rank % len(states)])
        seen = int(state.get("batches_in_epoch", 0))
        if seen:
            self.skip_seen_batches(trainer, seen)

    @staticmethod
    def skip_seen_batches(trainer: L.Trainer, seen: int) -> None:
        """A mid-epoch checkpoint: the epoch goes on with the batches after the `seen` ones, in the same order."""
        samplers = train_samplers(trainer)
        batch_size = getattr(trainer.train_dataloader, "batch_size", None)
        if batch_size and samplers and all(isinstance(s, EpochRandomSampler) for s in samplers):
            for sampler in samplers:
                sampler.skip_next(seen * batch_size)
            log.info("resuming mid-epoch %d after its first %d batches", trainer.current_epoch, seen)
            return
        log.warning(
            "resuming mid-epoch from a checkpoint whose sampler cannot skip the %d batches already seen "
            "(%s): this epoch restarts its data order; resume from an epoch-end checkpoint for an exact run",
            seen,
            ", ".join(type(s).__name__ for s in samplers),
        )
