"""Keeping sampled x0 predictions in the data range: static clipping and dynamic thresholding."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def dynamic_threshold(x0: Tensor, percentile: float = 0.9) -> Tensor:
    """Dynamic thresholding (Saharia et al. 2022, Imagen, sec. 2.3), per sample of x0 (B, ...).

    s = max(1, the ``percentile``-quantile of |x0| over the sample), then x0 <- clamp(x0, -s, s) / s: a
    sample within [-1, 1] at that quantile is only clipped to [-1, 1]; one beyond it is clamped at its
    quantile and rescaled into [-1, 1]. The quantile interpolates linearly, as the DAWN reference does.
    """
    s = torch.quantile(rearrange(x0, "b ... -> b (...)").abs().float(), percentile, dim=-1).clamp(min=1)
    s = s.to(x0.dtype).reshape(-1, *(1,) * (x0.ndim - 1))
    return x0.clamp(-s, s) / s


def process_x0(
    x0: Tensor, dynamic_percentile: float | None = None, clip_range: tuple[float, float] | None = None
) -> Tensor:
    """Dynamic-threshold x0 at ``dynamic_percentile`` if given, then clip it to ``clip_range`` if given."""
    if dynamic_percentile is not None:
        x0 = dynamic_threshold(x0, dynamic_percentile)
    if clip_range is not None:
        x0 = x0.clamp(*clip_range)
    return x0
