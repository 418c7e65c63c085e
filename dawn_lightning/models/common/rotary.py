"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer", arXiv 2104.09864).

Feature pairs (2m, 2m+1) of a query or key at position p are rotated by the angle p * theta^(-2m / dim), so
the dot product of a rotated query at i with a rotated key at j depends on the positions only through i - j.
The layout (interleaved pairs, theta 10000, positions 0..F-1, the first ``dim`` features rotated and the rest
passed through) is that of the DAWN reference's temporal attention (rotary-embedding-torch 0.3.5).
"""

from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """Rotates the first ``dim`` features of (..., F, D) tensors by their position along F (D >= dim).

    ``freqs`` (dim / 2,) is a persistent buffer under the reference's name, so reference state dicts load as
    they are (they store it, identical in every temporal attention).
    """

    freqs: torch.Tensor

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"rotary dim must be a positive even number, got {dim}")
        self.dim = dim
        self.register_buffer("freqs", theta ** -(torch.arange(0, dim, 2, dtype=torch.float32) / dim))

    def angles(self, num_positions: int) -> torch.Tensor:
        """(F, dim / 2) rotation angles p * freq for positions p = 0..F-1, float32."""
        positions = torch.arange(num_positions, device=self.freqs.device, dtype=torch.float32)
        return positions[:, None] * self.freqs.float()[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., F, D) -> (..., F, D), the same dtype, position = index along F.

        Each feature pair is taken as a complex number and multiplied by exp(i * angle), in at least float32.
        """
        if x.shape[-1] < self.dim:
            raise ValueError(f"feature size {x.shape[-1]} is smaller than the rotary dim {self.dim}")
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        angles = self.angles(x.shape[-2]).to(compute_dtype)
        pairs = x[..., : self.dim].to(compute_dtype).unflatten(-1, (-1, 2))
        if pairs.storage_offset() % 2 or any(stride % 2 for stride in pairs.stride()[:-1]):
            pairs = pairs.contiguous()
        rotated = torch.view_as_complex(pairs) * torch.polar(torch.ones_like(angles), angles)
        rotated = torch.view_as_real(rotated).flatten(-2).to(x.dtype)
        if self.dim == x.shape[-1]:
            return rotated
        return torch.cat((rotated, x[..., self.dim :]), dim=-1)
