"""Conditioning of the A2V 3-D U-Net: per-frame cross-attention to one condition token, and the face-region
embedding of the reference frame's face box (DAWN, Cheng et al. 2024, arXiv 2410.13726).

Every ResBlock of the DAWN U-Net attends, for each frame separately, from its spatial tokens to two keys: a
learned null key/value and the frame's own condition token (audio, pose delta or blink delta). With two keys
the softmax is a sigmoid of the score difference, p_cond = sigmoid(s_cond - s_null), so the attention needs
one dot product per token and head and no (tokens x keys) score tensor. The attention itself follows the
reference (cosine-similarity attention with learned q/k scales and a fixed temperature 8, Henry et al. 2020,
"Query-Key Normalization for Transformers"; output LayerNorm as in Imagen, Saharia et al. 2022).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn


def layer_norm_last(x: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
    """LayerNorm over the last axis without bias, eps 1e-5 for float32 and 1e-3 otherwise (the
    reference's)."""
    eps = 1e-5 if x.dtype == torch.float32 else 1e-3
    return F.layer_norm(x, x.shape[-1:], None if gain is None else gain.to(x.dtype), eps=eps)


class LayerNormImg(nn.Module):
    """LayerNorm over the last axis with a gain ``g`` and no bias: the reference U-Net's ``LayerNorm_img``.
    PBNet's differs (``gamma`` (1, 1, dim), fixed eps: `pose_blink.layers.GainLayerNorm`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., dim) -> (..., dim)."""
        return layer_norm_last(x, self.g)


class NullOrTokenAttention(nn.Module):
    """Cross-attention of spatial tokens to [null token, one condition token], per frame.

    Parameter names and shapes follow the reference ``CrossAttention``: ``norm.g`` (dim), ``to_q``
    Linear(dim, heads * dim_head), ``to_kv`` Linear(context_dim, 2 * heads * dim_head), ``null_kv``
    (2, dim_head) shared by the heads, ``q_scale``/``k_scale`` (dim_head),
    ``to_out`` = [Linear(heads * dim_head, dim_out), LayerNormImg(dim_out)], no biases.

    The score of head h is scale * <q_h / |q_h| * q_scale, k_h / |k_h| * k_scale>. Since the softmax over two
    keys is a sigmoid of the score difference and the output projection is linear, the result per token is
    ``W_out nv + sum_h p_h W_out,h (v_h - nv)``: a per-frame base plus per-frame head directions weighted by
    the per-token probabilities p_h.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        dim_out: int,
        heads: int = 8,
        dim_head: int = 8,
        scale: float = 8.0,
    ):
        super().__init__()
        self.heads = heads
        self.scale = scale
        inner = heads * dim_head
        self.norm = LayerNormImg(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.null_kv = nn.Parameter(torch.randn(2, dim_head))
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Sequential(nn.Linear(inner, dim_out, bias=False), LayerNormImg(dim_out))

    def forward(self, normed: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """normed (N, L, dim): tokens already layer-normalised without gain; context (N, context_dim), one
        token per frame (N = batch * frames, L = h * w) -> (N, L, dim_out)."""
        q = F.linear(normed, self.to_q.weight * self.norm.g.to(normed.dtype))
        q = F.normalize(rearrange(q, "n l (h d) -> n l h d", h=self.heads), dim=-1) * self.q_scale
        k, v = rearrange(self.to_kv(context), "n (two h d) -> two n h d", two=2, h=self.heads)
        null_k, null_v = self.null_kv.unbind(0)
        k = F.normalize(k, dim=-1) * self.k_scale
        null_k = F.normalize(null_k, dim=-1) * self.k_scale
        p_cond = torch.sigmoid(self.scale * einsum(q, k - null_k, "n l h d, n h d -> n l h"))
        w_out = rearrange(self.to_out[0].weight, "o (h d) -> h d o", h=self.heads)
        base = einsum(w_out, null_v, "h d o, d -> o")
        directions = einsum(w_out, v - null_v, "h d o, n h d -> n h o")
        out = base + einsum(p_cond, directions, "n l h, n h o -> n l o")
        return self.to_out[1](out)


class FaceRegionEncoder(nn.Module):
    """Embeds the binary face-box mask of the reference frame at 1/4 resolution (reference
    ``Face_loc_Encoder``, which DAWN never trains; here it is trained with the U-Net).
    (B, 1, S, S) -> (B, out_channels, S/4, S/4)."""

    def __init__(self, hidden_channels: int = 8, out_channels: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, hidden_channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, out_channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """mask (B, 1, S, S) -> (B, out_channels, S/4, S/4)."""
        return self.net(mask)
