"""Generator: encodes the source once, then renders frames from it and a sampling grid + occlusion (MRAA).

Encoder: 7x7 conv, 2 down blocks (the last feature is z_src); decoder: residual bottleneck, 2 up blocks, 7x7
conv, sigmoid. Every encoder feature is warped by the grid and blended with the decoder stream by the
occlusion ("skips"), and the output is blended with the warped source the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dawn_lightning.models.common.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d


def warp(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, H, W) at ``grid`` (B, h, w, 2), resizing the grid to H x W first."""
    if grid.shape[1:3] != image.shape[2:]:
        grid = F.interpolate(
            grid.permute(0, 3, 1, 2), size=image.shape[2:], mode="bilinear", align_corners=False
        ).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, align_corners=False)


@dataclass
class SourceEncoding:
    """A source image and its encoder features (first conv, then each down block); ``z`` is z_src."""

    image: torch.Tensor
    features: list[torch.Tensor]

    @property
    def z(self) -> torch.Tensor:
        return self.features[-1]

    def __len__(self) -> int:
        return len(self.image)

    def take(self, start: int, stop: int, count: int) -> SourceEncoding:
        """Rows start:stop, or one source broadcast to ``count`` rows when the encoding holds one image."""
        if len(self) == 1:
            return SourceEncoding(
                self.image.expand(count, -1, -1, -1), [f.expand(count, -1, -1, -1) for f in self.features]
            )
        return SourceEncoding(self.image[start:stop], [f[start:stop] for f in self.features])


class Generator(nn.Module):
    def __init__(
        self,
        num_channels: int = 3,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        num_bottleneck_blocks: int = 6,
        skips: bool = True,
        flow_predictor: nn.Module | None = None,
    ):
        super().__init__()

        def width(level: int) -> int:
            return min(max_features, block_expansion * 2**level)

        self.pixelwise_flow_predictor = flow_predictor
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(DownBlock2d(width(i), width(i + 1)) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1))
            for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width(num_down_blocks)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)
        self.skips = skips
        self.z_channels = width(num_down_blocks)

    def encode(self, source: torch.Tensor) -> SourceEncoding:
        features = [self.first(source)]
        for block in self.down_blocks:
            features.append(block(features[-1]))
        return SourceEncoding(source, features)

    def decode(self, source: SourceEncoding, grid: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) in [0, 1] from an encoded source, grid (B, h, w, 2), occlusion (B, 1, h, w)."""

        def blend(skip: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
            warped = warp(skip, grid)
            occ = occlusion
            if occ.shape[2:] != warped.shape[2:]:
                occ = F.interpolate(occ, size=warped.shape[2:], mode="bilinear", align_corners=False)
            return warped * occ if previous is None else warped * occ + previous * (1 - occ)

        out = self.bottleneck(blend(source.features[-1], None))
        for i, block in enumerate(self.up_blocks):
            if self.skips:
                out = blend(source.features[-(i + 1)], out)
            out = block(out)
        if self.skips:
            out = blend(source.features[0], out)
        out = torch.sigmoid(self.final(out))
        return blend(source.image, out) if self.skips else out
