"""Which samples a process draws, and the randomness of each sample: both functions of the seed, the epoch and
the sample's number alone.

`EpochSampler` deals an epoch's samples (a permutation fixed by (seed, epoch) for training, the dataset in
order for evaluation) to the ranks in turn and yields keys ``(epoch, index)``; `sample_rng` turns a key into
the sample's random generator. So a sample is the same whatever the number of processes, loader workers or
restarts, and a run resumed in the middle of an epoch (`start_at`) draws the rest of that epoch's samples, the
same ones as an uninterrupted run. `SampleDraws` carries that to the model's side of a training step (noise,
diffusion steps, condition dropout), from a seed each sample brings.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler

Key = tuple[int, int]  # (epoch, index)


def split_key(key: int | Key) -> Key:
    """A dataset's ``__getitem__`` argument as (epoch, index); a plain index is epoch 0's."""
    return (0, int(key)) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))


def sample_rng(seed: int, key: int | Key, train: bool) -> np.random.Generator:
    """The random generator of a sample: training samples differ from epoch to epoch, evaluation samples are
    the same every epoch."""
    epoch, index = split_key(key)
    return np.random.default_rng([seed, epoch, index] if train else [seed, index])


def draw_seed(rng: np.random.Generator) -> torch.Tensor:
    """A training item's ``seed`` for the model's draws (`SampleDraws`), from the sample's generator."""
    return torch.tensor(int(rng.integers(2**62)))


class EpochSampler(Sampler[Key]):
    """This rank's keys (epoch, index) of one pass over ``size`` samples.

    Training (``shuffle``): the samples in the order of a permutation fixed by (seed, epoch), the
    ``size % world_size`` last ones dropped so that every rank gets as many, dealt to the ranks in turn.
    Evaluation: every sample exactly once, in order, dealt in turn (the shares differ by at most one).
    ``start_at(n)`` makes the next pass begin at this rank's n-th sample (a run resumed mid-epoch).
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self._start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def start_at(self, position: int) -> None:
        self._start = position

    def __len__(self) -> int:
        if self.shuffle:
            return self.size // self.world_size
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self):
        """Keys made as they are drawn: an epoch of 25 million samples is one int32 permutation (100 MB),
        not 25 million Python tuples."""
        epoch = self.epoch
        if self.shuffle:
            order = np.arange(self.size, dtype=np.int32 if self.size < 2**31 else np.int64)
            np.random.default_rng([self.seed, epoch]).shuffle(order)  # = default_rng(...).permutation(size)
            order = order[: len(self) * self.world_size]
        else:
            order = range(self.size)
        share = order[self.rank :: self.world_size][self._start :]
        self._start = 0
        return ((epoch, int(i)) for i in share)
