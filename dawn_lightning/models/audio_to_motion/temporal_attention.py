"""Temporal self-attention of the A2V 3-D U-Net, restricted to a band of frames.

Every spatial position of a video feature map attends over the frames independently (factorised space-time
attention, Ho et al. 2022, "Video Diffusion Models", arXiv 2204.03458), with RoPE on queries and keys
(Su et al. 2021) and a T5 relative-position bias (Raffel et al. 2020), as in DAWN (Cheng et al. 2024,
arXiv 2410.13726). DAWN restricts frame i to frames |i - j| <= 40 when it generates long videos; the
reference code applies that band as a -1e8 bias on a dense F x F score matrix per spatial position, which
costs O(F^2) time and memory. Here the band is computed block-wise (sliding-window attention, Beltagy et al.
2020, "Longformer", arXiv 2004.05150): queries [s, s + block) only meet keys [s - window, s + block + window),
so time and memory are O(F * window), with the same result as the dense masked version, and the same code
runs in training and in sampling. On CUDA the band goes through ``flex_attention`` instead (Dong et al.
2024, "Flex Attention", arXiv 2412.05496): a block mask of the band, so blocks outside it are skipped, and the
relative-position bias as a score modification, compiled into one fused kernel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dawn_lightning.models.common.rotary import RotaryEmbedding

PositionBias = Callable[[torch.Tensor], torch.Tensor] | torch.Tensor


def _offset_table(bias: PositionBias | None, reach: int, device: torch.device) -> torch.Tensor | None:
    """Bias of every offset j - i in [-reach, reach] as (heads or 1, 2 * reach + 1), or None."""
    if bias is None:
        return None
    if callable(bias):
        return bias(torch.arange(-reach, reach + 1, device=device))
    half = (bias.shape[-1] - 1) // 2
    if bias.dim() != 2 or bias.shape[-1] % 2 == 0 or half < reach:
        raise ValueError(
            f"a bias tensor must be (heads, 2R + 1) over offsets -R..R with R >= {reach}, "
            f"got {tuple(bias.shape)}"
        )
    return bias[:, half - reach : half + reach + 1]


def _band_mask(
    offsets: torch.Tensor, reach: int, table: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """Additive mask (heads or 1, queries, keys) from the offsets j - i (queries, keys).

    The bias of the offset where |j - i| <= reach (0 without a bias), -inf elsewhere.
    """
    outside = offsets.abs() > reach
    if table is None:
        values = torch.zeros((1, *offsets.shape), dtype=dtype, device=offsets.device)
    else:
        values = table[:, offsets.clamp(-reach, reach) + reach].to(dtype)
    return values.masked_fill(outside, -torch.inf)


def banded_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int | None,
    bias: PositionBias | None = None,
    block_size: int | None = None,
) -> torch.Tensor:
    """Softmax attention of frame i over the frames j with |i - j| <= window, in O(F * window) memory.

    q, k, v: (B, heads, F, d). Returns (B, heads, F, d), equal to dense attention with scores
    q_i . k_j / sqrt(d) + bias(j - i), set to -inf where |i - j| > window.

    window: the band half-width; None means full attention (window = F - 1).
    bias: the additive bias of the offset j - i (key minus query, the T5 convention), either a callable
        mapping an integer offset tensor (...) to (heads, ...) (e.g. ``RelativePositionBias``) or a tensor
        (heads or 1, 2R + 1) holding the offsets -R..R, R >= min(window, F - 1).
    block_size: queries per block, default max(2 * window, 32). When F <= block + 2 * window, one dense
        masked call is as cheap, and its F x F scores are bounded by a constant; otherwise each block of
        queries meets the keys [start - window, start + block + window) of the zero-padded keys through one
        ``scaled_dot_product_attention`` call: ceil(F / block) calls whose scores, B * heads * block *
        (block + 2 * window) each, do not grow with F. Blocks are views made by split and unfold, whose
        backward passes are linear in F.
    """
    if q.dim() != 4 or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"q, k, v must be (B, heads, F, d) alike, got {q.shape}, {k.shape}, {v.shape}")
    if window is not None and window < 0:
        raise ValueError(f"window must be >= 0 or None, got {window}")
    length = q.shape[-2]
    reach = length - 1 if window is None else min(window, length - 1)
    block = block_size or max(2 * reach, 32)
    table = _offset_table(bias, reach, q.device)
    if length <= block + 2 * reach:
        positions = torch.arange(length, device=q.device)
        dense = table is None and reach == length - 1
        # A 4-D mask: PyTorch's CPU flash kernel takes it; a 3-D one falls back to the 2x slower math path.
        mask = (
            None
            if dense
            else _band_mask(positions[None, :] - positions[:, None], reach, table, q.dtype)[None]
        )
        return F.scaled_dot_product_attention(q, k, v, mask)

    span = block + 2 * reach
    starts = torch.arange(0, length, block, device=q.device)
    columns = torch.arange(span, device=q.device)
    # Key column c of the block starting at s is frame s - reach + c; padding frames are masked out.
    padding = (starts[:, None] - reach + columns < 0) | (starts[:, None] - reach + columns >= length)
    band = _band_mask(columns[None, :] - reach - columns[:block, None], reach, table, q.dtype)
    masks = band.masked_fill(padding[:, None, None, :], -torch.inf).unbind(0)  # (heads, block, span) each
    pad = (0, 0, reach, reach + len(starts) * block - length)
    key_blocks = F.pad(k, pad).unfold(2, span, block).transpose(-1, -2).unbind(2)
    value_blocks = F.pad(v, pad).unfold(2, span, block).transpose(-1, -2).unbind(2)
    outs = [
        F.scaled_dot_product_attention(query, key, value, mask[None, :, : query.shape[-2]]).transpose(1, 2)
        for query, key, value, mask in zip(
            q.split(block, dim=2), key_blocks, value_blocks, masks, strict=True
        )
    ]
    return torch.cat(outs, dim=1).transpose(1, 2)


BACKENDS = ("auto", "sdpa", "flex")


def flex_banded_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None, bias: PositionBias | None = None
) -> torch.Tensor:
    """`banded_attention` through ``flex_attention``: the band as a block mask, the bias of the offset j - i
    as a score modification. Compiled on CUDA; elsewhere PyTorch runs its eager reference implementation
    (slow: for the equality test on the CPU)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    length = q.shape[-2]
    reach = length - 1 if window is None else min(window, length - 1)
    table = _offset_table(bias, reach, q.device)

    def in_band(batch, head, query, key):
        return (query - key).abs() <= reach

    def add_bias(score, batch, head, query, key):
        offset = (key - query).clamp(-reach, reach) + reach
        return score + table[head if table.shape[0] > 1 else 0, offset].to(score.dtype)

    mask = create_block_mask(in_band, None, None, length, length, device=q.device)
    attend = _compiled_flex() if q.is_cuda else flex_attention
    return attend(q, k, v, score_mod=None if table is None else add_bias, block_mask=mask)


_COMPILED: dict = {}


def _compiled_flex():
    if "flex" not in _COMPILED:
        from torch.nn.attention.flex_attention import flex_attention

        _COMPILED["flex"] = torch.compile(flex_attention, dynamic=False)
    return _COMPILED["flex"]


class TemporalAttention(nn.Module):
    """Multi-head self-attention over the frames of each spatial position: (B, C, F, H, W) -> same shape.

    Parameter names and shapes follow the reference's temporal ``Attention``: ``to_qkv`` Linear(C, 3 * heads *
    dim_head, no bias) with the features laid out (q|k|v, head, dim), ``to_out`` Linear(heads * dim_head, C,
    no bias), ``rotary_emb.freqs``; the relative-position bias is owned by the U-Net (one for all temporal
    attentions, ``time_rel_pos_bias``) and passed to ``forward``. Pre-norm and residual are the caller's.

    window: attend to |i - j| <= window frames (DAWN: 40; clips of <= 41 frames are then fully connected,
        as in the reference's unmasked training); None for full attention.
    rotary_dim: rotated features per head, default min(32, dim_head) as in the reference.
    backend: "auto" (flex_attention on CUDA, the block-wise SDPA band elsewhere), "sdpa" or "flex"; set for
        every temporal attention of a network by `set_attention_backend`.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int = 32,
        window: int | None = 40,
        rotary_dim: int | None = None,
    ):
        super().__init__()
        self.heads = heads
        self.window = window
        self.backend = "auto"
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.rotary_emb = RotaryEmbedding(rotary_dim or min(32, dim_head))

    def _heads(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F, heads * d) -> (N, heads, F, d)."""
        return rearrange(features, "n f (h d) -> n h f d", h=self.heads)

    def forward(self, x: torch.Tensor, pos_bias: PositionBias | None = None) -> torch.Tensor:
        """x (B, C, F, H, W), pos_bias as in ``banded_attention`` -> (B, C, F, H, W)."""
        b, _, _, h, w = x.shape
        tokens = rearrange(x, "b c f h w -> (b h w) f c")
        # One projection per third of to_qkv, so that unrotated q and k are freed before the attention.
        weight_q, weight_k, weight_v = self.to_qkv.weight.chunk(3)
        q = self.rotary_emb(self._heads(F.linear(tokens, weight_q)))
        k = self.rotary_emb(self._heads(F.linear(tokens, weight_k)))
        values = self._heads(F.linear(tokens, weight_v))
        flex = self.backend == "flex" or (self.backend == "auto" and q.is_cuda)
        attend = flex_banded_attention if flex else banded_attention
        out = attend(q, k, values, self.window, pos_bias)
        out = self.to_out(rearrange(out, "n h f d -> n f (h d)"))
        out = rearrange(out, "(b h w) f c -> b c f h w", b=b, h=h, w=w)
        return out.contiguous(memory_format=torch.channels_last_3d)  # the U-Net blocks' layout


def set_temporal_window(net: nn.Module, window: int | None) -> None:
    """Sets the band |i - j| <= window of every temporal attention in ``net`` (None: full attention)."""
    if window is not None and (int(window) != window or window < 1):
        raise ValueError(f"window must be a positive number of frames, got {window!r}")
    for module in net.modules():
        if isinstance(module, TemporalAttention):
            module.window = None if window is None else int(window)


def set_attention_backend(net: nn.Module, backend: str) -> None:
    """Sets how every temporal attention in ``net`` computes its band (see `TemporalAttention`)."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    for module in net.modules():
        if isinstance(module, TemporalAttention):
            module.backend = backend
