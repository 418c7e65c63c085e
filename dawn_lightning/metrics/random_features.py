"""Weight-free feature networks for FID and FVD: fixed random convolutions with a fixed seed.

They make the Frechet metrics run without any download. Their values rank runs consistently (same seed, same
network, same numbers) but are NOT comparable with published FID/FVD, and every report labels them as
"random-feature".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LABEL = "random-feature, not comparable to papers"


def _init_fixed(net: nn.Module, seed: int) -> nn.Module:
    """Kaiming-normal weights and zero biases drawn from their own generator (independent of global RNG)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2 / fan_in) ** 0.5
                )
                module.bias.zero_()
    return net.eval().requires_grad_(False)


class RandomImageFeatures(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> (N, dim): three strided random convolutions, global average pool,
    at ``size`` px."""

    def __init__(self, dim: int = 64, size: int = 64, seed: int = 0):
        super().__init__()
        self.size, self.dim = size, dim
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, dim, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
        )
        _init_fixed(self, seed)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = F.interpolate(
            images.float(), size=(self.size, self.size), mode="bilinear", align_corners=False
        )
        return self.net(images * 2 - 1).flatten(1)


class RandomVideoFeatures(nn.Module):
    """Clips (B, 3, T, H, W) in [-1, 1] -> (B, dim): random 3-D convolutions over space and time, global
    average pool (the clips are resized to ``size`` px by the caller)."""

    def __init__(self, dim: int = 32, seed: int = 0):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(
            nn.Conv3d(3, 16, (3, 4, 4), (1, 2, 2), (1, 1, 1)),
            nn.LeakyReLU(0.2),
            nn.Conv3d(16, 32, (3, 4, 4), (2, 2, 2), (1, 1, 1)),
            nn.LeakyReLU(0.2),
            nn.Conv3d(32, dim, (3, 4, 4), (2, 2, 2), (1, 1, 1)),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool3d(1),
        )
        _init_fixed(self, seed)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net(clips.float()).flatten(1)
