"""Smoothing a sampled sequence along time: a Gaussian filter over frames, edges repeated."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def smooth_over_time(x: Tensor, sigma: float, dim: int = 2) -> Tensor:
    """A Gaussian filter of standard deviation ``sigma`` frames along ``dim`` of ``x`` (the first and last
    frames repeated beyond the ends, so a constant sequence stays constant). ``sigma`` 0 returns ``x``.

    A sampler's x0 of an under-trained video diffusion carries frame-independent errors that show as
    flicker. At 25 fps, sigma 1 keeps 88 % of the amplitude of a 2 Hz motion and 60 % of a 4 Hz one, and
    removes 99 % of a frame-to-frame alternation.
    """
    if sigma < 0:
        raise ValueError(f"temporal smoothing sigma must be >= 0 frames, got {sigma}")
    if sigma == 0 or x.shape[dim] < 2:
        return x
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    moved = x.movedim(dim, -1)
    rows = moved.reshape(-1, 1, moved.shape[-1])
    padded = F.pad(rows, (radius, radius), mode="replicate")
    smoothed = F.conv1d(padded, kernel.view(1, 1, -1))
    return smoothed.reshape(moved.shape).movedim(-1, dim)
