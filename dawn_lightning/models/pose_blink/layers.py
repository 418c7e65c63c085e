"""Attention layers of PBNet's decoder (DAWN stage 2): multi-head attention with rotary position embedding
(Su et al. 2021) on part of each head and a T5 relative-position bias (Raffel et al. 2020) added to the
scores. Sequences are batch-first (B, N, C). Parameter names follow the reference implementation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class GainLayerNorm(nn.Module):
    """LayerNorm with a gain and no bias (eps 1e-5), over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
        return (x - mean) * (var + self.eps).rsqrt() * self.gamma


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rotary: nn.Module | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """Softmax attention of (B, h, N, d) heads; ``bias`` (h, N, M) is added to the scores."""
    if rotary is not None:
        q, k = rotary(q), rotary(k)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class SelfAttention(nn.Module):
    """Multi-head self-attention: (B, N, dim) -> (B, N, dim)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32, rotary: nn.Module | None = None):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.rotary_emb = rotary

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = rearrange(self.to_qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        return self.to_out(rearrange(attend(q, k, v, self.rotary_emb, bias), "b h n d -> b n (h d)"))


class CrossAttention(nn.Module):
    """Multi-head attention of queries (B, N, dim) over a memory (B, M, dim) -> (B, N, dim)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32, rotary: nn.Module | None = None):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_k = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_v = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.rotary_emb = rotary

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        q, k, v = (
            rearrange(f(t), "b n (h d) -> b h n d", h=self.heads)
            for f, t in ((self.to_q, x), (self.to_k, memory), (self.to_v, memory))
        )
        return self.to_out(rearrange(attend(q, k, v, self.rotary_emb, bias), "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.gelu(self.linear1(x))))


class DecoderLayer(nn.Module):
    """Post-norm transformer decoder layer: self-attention, cross-attention to the memory, feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_size: int, dropout: float, rotary: nn.Module):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, dim_head, rotary)
        self.multihead_attn = CrossAttention(dim, heads, dim_head, rotary)
        self.ffn = FeedForward(dim, ff_size, dropout)
        self.layer_norm1, self.layer_norm2, self.layer_norm3 = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, bias_tgt: torch.Tensor, bias_mem: torch.Tensor
    ) -> torch.Tensor:
        x = self.layer_norm1(x + self.dropout(self.self_attn(x, bias_tgt)))
        x = self.layer_norm2(x + self.dropout(self.multihead_attn(x, memory, bias_mem)))
        return self.layer_norm3(x + self.dropout(self.ffn(x)))


def band_bias(length: int, window: int | None, device=None) -> torch.Tensor | None:
    """(N, N) additive mask: 0 where |i - j| <= window, -inf elsewhere; None when all of it is in the band."""
    if window is None or length <= window + 1:
        return None
    offsets = torch.arange(length, device=device)
    outside = (offsets[None, :] - offsets[:, None]).abs() > window
    return torch.zeros(length, length, device=device).masked_fill(outside, float("-inf"))


def attention_bias(
    relative: nn.Module, length: int, window: int | None, mask: torch.Tensor | None, device=None
) -> torch.Tensor:
    """Additive attention scores (B or 1, h, N, N): the relative-position bias of each offset j - i, -inf
    outside the band |i - j| <= window, and -inf on the keys of padded frames (``mask`` (B, N), True =
    real)."""
    positions = torch.arange(length, device=device)
    bias = relative(positions[None, :] - positions[:, None])[None]
    band = band_bias(length, window, device)
    if band is not None:
        bias = bias + band
    if mask is not None:
        bias = bias + torch.zeros(mask.shape, device=device).masked_fill(~mask, float("-inf"))[:, None, None]
    return bias


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, N, K) ``values`` over the real frames, ``mask`` (B, N), per sample, then averaged over the
    samples (so a batch split across ranks averages to the whole batch's)."""
    valid = mask[..., None].to(values.dtype)
    per_sample = (values * valid).sum((1, 2)) / (valid.sum((1, 2)) * values.shape[-1]).clamp_min(1.0)
    return per_sample.mean()


def masked_mse(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    channel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """`masked_mean` of the squared error of (B, N, K) sequences, each channel's error times
    ``channel_weights`` (K,) when given."""
    error = (prediction - target) ** 2
    return masked_mean(error if channel_weights is None else error * channel_weights, mask)
