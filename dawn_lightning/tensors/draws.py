"""Random draws that are functions of a seed alone: each sample's noise, steps and dropout from the seed its
data item brings (`SampleDraws`), and torch's global RNG seeded for a block (`torch_rng_seeded`). So a batch
split over ranks draws, sample for sample, what it draws whole in one process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_rng_seeded(seed: int) -> Iterator[None]:
    """Torch's global RNG seeded with ``seed`` inside the block and as it was after it: for library code that
    draws from it (torchvision's colour jitter)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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
