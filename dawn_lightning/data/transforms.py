"""Frame conversions and the stage-1 pair augmentation."""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

from dawn_lightning.tensors.draws import torch_rng_seeded


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "n h w c -> n c h w").float().div_(255)


class PairAugment:
    """The same random horizontal flip and colour jitter on a (source, driving) pair, plus a random swap of
    the two (time flip), all drawn from the sample's generator."""

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

    def __call__(
        self, pair: torch.Tensor, boxes: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """pair: float (2, 3, H, W) in [0, 1], the same transform on both frames; boxes: (2, 4) normalised
        (x0, y0, x1, y1) boxes of the two frames, mirrored and swapped with them."""
        if rng.random() < self.hflip:
            pair = pair.flip(-1)
            boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], dim=1)
        if rng.random() < self.time_flip:
            pair, boxes = pair.flip(0), boxes.flip(0)
        if self.jitter is not None:
            with torch_rng_seeded(int(rng.integers(2**63))):
                pair = self.jitter(pair).clamp_(0, 1)
        return pair, boxes
