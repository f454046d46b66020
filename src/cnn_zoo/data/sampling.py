"""The training split's order, and its per-sample randomness, as pure functions of (seed, epoch): exact resumes.

torch's `RandomSampler` draws its permutation from the global random state at the epoch's first batch, so a
resumed run would shuffle differently unless every earlier draw were replayed. `EpochRandomSampler` draws the
permutation of epoch `e` from its own generator, `randperm(n, Generator().manual_seed(seed + e))`, and a resume
in the middle of an epoch asks it to skip the samples already trained on (`skip_next`).

It is a `DistributedSampler`: with a process group (DDP) it serves this rank's share of that permutation
(`torch.utils.data.DistributedSampler`'s own scheme: padded to a multiple of the world size, then every
`world_size`-th index from `rank`), and Lightning keeps it instead of putting a `DistributedSampler` of its own
in its place, so a mid-epoch resume under DDP skips the batches each rank has seen too. Without a process group
it is the one replica of that scheme: no padding, the permutation itself, `len(dataset)` samples.

The sampler must be asked for an epoch's order only once that epoch's `set_epoch` (and a resume's `skip_next`)
has happened. Lightning makes the training loader's first iterator before either (in `FitLoop.setup_data`, before
`on_train_start`); a single-process iterator asks the sampler at its first batch, but one with worker processes
asks at once, to prefetch. `EpochLoader` therefore hands out iterators that start the DataLoader's own at their
first batch: the same moment with and without workers.

Random augmentation draws from the augmentation library's own generators, which live in each DataLoader worker
(a copy per worker) and restart with every process. A dataset that is a `SeededSamples` is therefore indexed
with `(index, sample_seed)` pairs instead, `sample_seed = sample_seeds(seed, epoch, n)[index]`, and draws that
sample's randomness from that seed alone: the same augmented images whatever `num_workers`, and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import numpy as np
import torch
import torch.distributed
from torch.utils.data import DataLoader, DistributedSampler


class SeededSamples:
    """A dataset whose per-sample randomness comes from a seed: the training sampler indexes it with pairs.

    `__getitem__` then receives `(index, sample_seed)` from `EpochRandomSampler` and a plain `index` from any
    other sampler (evaluation, Lightning's `overfit_batches`), where it may draw from its own generators.
    `wants_sample_seeds` is False when it has no randomness to seed (the pairs would only cost time).
    """

    @property
    def wants_sample_seeds(self) -> bool:
        return True


def sample_seeds(seed: int, epoch: int, n: int) -> np.ndarray:
    """One 32-bit seed per sample index of epoch `epoch`: word `i` depends on (seed, epoch, i) only, not on `n`."""
    return np.random.SeedSequence([int(seed), int(epoch)]).generate_state(n) if n else np.zeros(0, np.uint32)


def process_group() -> tuple[int, int]:
    """(world size, rank) of the default process group; (1, 0) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochRandomSampler(DistributedSampler):
    """This rank's share of `randperm(n, Generator(seed + epoch))`; Lightning calls `set_epoch` every epoch."""

    def __init__(self, data_source: Sized, seed: int, num_replicas: int | None = None, rank: int | None = None):
        world, own_rank = process_group()
        super().__init__(
            data_source,  # type: ignore[arg-type]
            num_replicas=world if num_replicas is None else num_replicas,
            rank=own_rank if rank is None else rank,
            shuffle=True,
            seed=int(seed),
            drop_last=False,
        )
        self.skip = 0
        self.seeded = isinstance(data_source, SeededSamples) and data_source.wants_sample_seeds

    @property
    def data_source(self) -> Sized:  # `RandomSampler`'s name for it, which this sampler used to be
        return self.dataset

    def skip_next(self, samples: int) -> None:
        """The next iteration starts after `samples` of this rank's samples (a resume mid-epoch)."""
        self.skip = int(samples)

    def __iter__(self) -> Iterator[Any]:
        # a generator: the permutation is drawn at the first batch, after Lightning's set_epoch for this epoch
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        indices = indices[skip:]
        if not self.seeded:
            yield from indices
            return
        seeds = sample_seeds(self.seed, self.epoch, len(self.dataset)).tolist()  # type: ignore[arg-type]
        yield from ((index, seeds[index]) for index in indices)


class FirstBatchIterator:
    """An iterator that makes the real one (`start()`) at the first `next()`, not when it is created."""

    def __init__(self, start: Callable[[], Iterator[Any]], length: int) -> None:
        self.start = start
        self.length = length
        self.iterator: Iterator[Any] | None = None

    def __iter__(self) -> FirstBatchIterator:
        return self

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = self.start()
        return next(self.iterator)

    def __len__(self) -> int:
        return self.length


class EpochLoader(DataLoader):
    """A DataLoader whose iterator asks the sampler for the order at the first batch, with or without workers."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return FirstBatchIterator(super().__iter__, len(self))
