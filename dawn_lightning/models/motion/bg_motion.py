"""Background motion predictor: one affine transform for the whole frame (MRAA)."""

from __future__ import annotations

import torch
from torch import nn

from dawn_lightning.models.common.blocks import Encoder


class BackgroundMotionPredictor(nn.Module):
    """(source, driving) (B, 3, H, W) -> (B, 3, 3) affine [[a, b, c], [d, e, f], [0, 0, 1]], starting at the
    identity."""

    def __init__(
        self, num_channels: int = 3, block_expansion: int = 32, max_features: int = 1024, num_blocks: int = 5
    ):
        super().__init__()
        self.encoder = Encoder(block_expansion, 2 * num_channels, num_blocks, max_features)
        self.fc = nn.Linear(min(max_features, block_expansion * 2**num_blocks), 6)
        nn.init.zeros_(self.fc.weight)
        with torch.no_grad():
            self.fc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        features = self.encoder(torch.cat([source, driving], dim=1))[-1].mean(dim=(2, 3))
        top = self.fc(features).view(-1, 2, 3)
        bottom = torch.tensor([0.0, 0.0, 1.0], device=top.device, dtype=top.dtype).expand(len(top), 1, 3)
        return torch.cat([top, bottom], dim=1)
