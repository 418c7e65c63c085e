"""1-D PatchGAN discriminator over pose/blink sequences (the one DAWN trains PBNet against)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class SequenceDiscriminator(nn.Module):
    """(B, N, K) sequences -> (B, N') patch logits, one per receptive field of ~34 frames. Sequences shorter
    than ``MIN_LENGTH`` frames are padded by repeating their last frame."""

    MIN_LENGTH = 32

    def __init__(self, state_dim: int, width: int = 64):
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv1d(cin, cout, 4, stride, 1), nn.BatchNorm1d(cout), nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(
            nn.Conv1d(state_dim, width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            *block(width, 2 * width, 2),
            *block(2 * width, 4 * width, 2),
            *block(4 * width, 4 * width, 1),
            nn.Conv1d(4 * width, 1, 4, 1, 1),
        )

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        sequence = rearrange(sequence, "b n k -> b k n")
        if sequence.shape[-1] < self.MIN_LENGTH:
            sequence = F.pad(sequence, (0, self.MIN_LENGTH - sequence.shape[-1]), mode="replicate")
        return self.net(sequence).squeeze(1)
