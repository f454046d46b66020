"""The training split's shuffling as a pure function of (seed, epoch): what makes a resumed run see the same batches.

torch's `RandomSampler` draws its permutation from the global random state at the epoch's first batch, so a
resumed run would shuffle differently unless every earlier draw were replayed. `EpochRandomSampler` is still a
`RandomSampler` (Lightning swaps it for a `DistributedSampler` under DDP, which is seeded by epoch too), but its
permutation for epoch `e` comes from its own generator seeded with `seed + e`, and a resume in the middle of an
epoch asks it to skip the samples already trained on (`skip_next`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import RandomSampler


class EpochRandomSampler(RandomSampler):
    """A permutation of the dataset per epoch, `randperm(n, Generator(seed + epoch))`; Lightning calls `set_epoch`."""

    def __init__(self, data_source: Sized, seed: int) -> None:
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_next(self, samples: int) -> None:
        """The next iteration starts after `samples` samples of its permutation (a resume mid-epoch)."""
        self.skip = int(samples)

    def __iter__(self) -> Iterator[int]:
        # a generator: the permutation is drawn at the first batch, after Lightning's set_epoch for this epoch
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.data_source), generator=generator)
        skip, self.skip = self.skip, 0
        yield from order[skip:].tolist()

    def __len__(self) -> int:
        return len(self.data_source)
