"""Convolutional building blocks of the FOMM/MRAA family (Siarohin et al. 2019, 2021), used by stage 1.

Parameter names follow the reference implementation, so its state dicts load without renaming. Every block is
(B, C, H, W) -> (B, C', H', W').
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AntiAliasDownsample(nn.Module):
    """Gaussian blur then keep every (1/scale)-th pixel: downsampling without aliasing.

    sigma = (1/scale - 1) / 2, kernel 2 * round(4 sigma) + 1, zero padding, depthwise. ``scale`` is 1/n.
    """

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.step = round(1 / scale)
        if abs(self.step * scale - 1) > 1e-6:
            raise ValueError(f"scale must be 1/n for an integer n, got {scale}")
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        axis = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        gauss = torch.exp(-(axis**2) / (2 * sigma**2))
        kernel = gauss[:, None] * gauss[None, :]
        kernel = (kernel / kernel.sum()).expand(channels, 1, size, size).contiguous()
        self.register_buffer("weight", kernel)
        self.pad = size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step == 1:
            return x
        x = F.pad(x, (self.pad,) * 4)
        x = F.conv2d(x, self.weight, groups=x.shape[1])
        return x[:, :, :: self.step, :: self.step]


class SameBlock2d(nn.Module):
    """conv -> BN -> ReLU at the same resolution."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(SameBlock2d):
    """conv -> BN -> ReLU -> 2x2 average pool (half resolution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), 2)


class UpBlock2d(SameBlock2d):
    """nearest 2x upsampling -> conv -> BN -> ReLU (double resolution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nearest 2x as a broadcast copy: the same values as F.interpolate(x, scale_factor=2), whose CPU
        # kernel took 4 % of 128-px decoding in extra copies (docs/stage1-motion.md)
        n, c, h, w = x.shape
        doubled = x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)
        return super().forward(doubled)


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv(relu(BN(conv(relu(BN(x))))))."""

    def __init__(self, features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(features, affine=True)
        self.norm2 = nn.BatchNorm2d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


def _width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2**level)


class Encoder(nn.Module):
    """Hourglass encoder: returns [x, level 1, ..., level n] features, each half the previous resolution."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                in_features if i == 0 else _width(block_expansion, max_features, i),
                _width(block_expansion, max_features, i + 1),
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: upsamples and concatenates the matching encoder feature after every block."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock2d(
                (1 if i == num_blocks - 1 else 2) * _width(block_expansion, max_features, i + 1),
                _width(block_expansion, max_features, i),
            )
            for i in reversed(range(num_blocks))
        )
        self.out_filters = block_expansion + in_features

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        *skips, out = features
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net style encoder-decoder; output has ``out_filters`` = block_expansion + in_features channels."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
