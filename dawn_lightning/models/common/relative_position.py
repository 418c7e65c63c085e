"""T5 relative-position bias (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer", JMLR 21; bucketing from its Mesh TensorFlow code).

A learned scalar per head and per bucket of the key-minus-query offset j - i, added to the attention logits.
Offsets are bucketed by sign (half of the buckets each); within a sign, |offset| < num_buckets / 4 gets its
own bucket, larger ones share log-spaced buckets up to ``max_distance``, beyond which they share the last.
The DAWN reference shares one such bias among the temporal attentions of its U-Net (``time_rel_pos_bias``:
32 buckets, max distance 32) and has two in PBNet's decoder (targets and memory: 128 buckets, 128).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def relative_position_bucket(
    relative_position: torch.Tensor, num_buckets: int = 32, max_distance: int = 32
) -> torch.Tensor:
    """Bidirectional T5 bucket of each offset j - i (integer tensor, any shape) -> int64, same shape.

    Buckets [0, num_buckets / 2) hold j <= i (key at or before the query), the others j > i.
    """
    half = num_buckets // 2
    bucket = (relative_position > 0).long() * half
    distance = relative_position.abs()
    max_exact = half // 2
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (half - max_exact)).long()).clamp(max=half - 1)
    return bucket + torch.where(distance < max_exact, distance, large)


class RelativePositionBias(nn.Module):
    """Learned per-head bias of the offset j - i, shared by the attentions that receive it.

    Parameter name as in the reference: ``relative_attention_bias`` = Embedding(num_buckets, heads).
    """

    def __init__(self, heads: int = 8, num_buckets: int = 32, max_distance: int = 32):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        """offsets (...) integer j - i -> bias (heads, ...)."""
        buckets = relative_position_bucket(offsets, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).movedim(-1, 0)
