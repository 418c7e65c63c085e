"""Frame conversions and the stage-1 pair augmentation."""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "n h w c -> n c h w").float().div_(255)


class PairAugment:
    """The same random horizontal flip and colour jitter on a (source, driving) pair, plus a random swap of
    the two (time flip). Randomness comes from torch's RNG, which Lightning seeds per worker and epoch."""

    def __init__(
        self,
        hflip: float = 0.5,
        time_flip: float = 0.5,
        brightness: float = 0.1,
        contrast: float = 0.1,
        saturation: float = 0.1,
        hue: float = 0.02,
    ):
        from torchvision.transforms import v2

        self.hflip, self.time_flip = hflip, time_flip
        self.jitter = (
            v2.ColorJitter(brightness, contrast, saturation, hue)
            if brightness or contrast or saturation or hue
            else None
        )

    def __call__(self, pair: torch.Tensor) -> torch.Tensor:
        """pair: float (2, 3, H, W) in [0, 1], the same transform on both frames."""
        if torch.rand(()) < self.hflip:
            pair = pair.flip(-1)
        if torch.rand(()) < self.time_flip:
            pair = pair.flip(0)
        if self.jitter is not None:
            pair = self.jitter(pair).clamp_(0, 1)
        return pair
