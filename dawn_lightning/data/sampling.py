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

from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def torch_rng_seeded(seed: int) -> Iterator[None]:
    """Torch's global RNG seeded with ``seed`` inside the block and as it was after it: for library code that
    draws from it (torchvision's colour jitter)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
            order = order[: len(self) * self.world_size]
        else:
            order = np.arange(self.size)
        share = order[self.rank :: self.world_size][self._start :]
        self._start = 0
        return iter([(self.epoch, int(i)) for i in share])


class SampleDraws:
    """A training step's random tensors, drawn sample by sample from generators seeded by each sample's
    ``seed`` (the datasets put one in training items). A batch split across ranks draws, sample for sample,
    what it draws whole in one process."""

    def __init__(self, seeds: torch.Tensor, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds.tolist()]

    @classmethod
    def fresh(cls, batch_size: int, device: torch.device | str = "cpu") -> SampleDraws:
        """Draws for a batch without seeds, seeded from torch's global RNG."""
        return cls(torch.randint(0, 2**62, (batch_size,)), device)

    @classmethod
    def for_batch(cls, batch: dict, batch_size: int, device: torch.device | str = "cpu") -> SampleDraws:
        """The draws of a batch: from its samples' ``seed`` (training items), else `fresh`."""
        seeds = batch.get("seed")
        return cls.fresh(batch_size, device) if seeds is None else cls(seeds, device)

    def _stack(self, draw) -> torch.Tensor:
        return torch.stack([draw(g) for g in self.generators])

    def rand(self, *shape: int) -> torch.Tensor:
        """(B, *shape) uniform in [0, 1)."""
        return self._stack(lambda g: torch.rand(shape, generator=g, device=self.device))

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, *shape) standard normal."""
        return self._stack(lambda g: torch.randn(shape, generator=g, device=self.device, dtype=dtype))

    def randint(self, high: int) -> torch.Tensor:
        """(B,) integers in [0, high)."""
        return self._stack(lambda g: torch.randint(0, high, (), generator=g, device=self.device))
