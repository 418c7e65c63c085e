"""Factorised space-time blocks of the A2V 3-D U-Net (Ho et al. 2022, "Video Diffusion Models",
arXiv 2204.03458), as DAWN uses them (Cheng et al. 2024, arXiv 2410.13726). Video tensors are (B, C, F, H, W);
every block here mixes space within a frame only (temporal mixing is ``TemporalAttention``'s, and GroupNorm's
statistics, which span all frames as in the reference).

The blocks return their videos in ``torch.channels_last_3d`` memory, (B, F, H, W, C) in memory: a frame's
convolution input (B * F, C, H, W) is then a channels-last view (oneDNN's fast layout, about 1.2x faster
convolutions here), and the (B * F, H * W, C) tokens of the spatial and cross-attentions and the channel
LayerNorm are views too, where a (B, C, F, H, W)-contiguous video needs a copy for each.

Parameter names follow the reference (``block1.proj``, ``block1.norm``, ``time_mlp.1``, ``audio_mlp.1``,
``cross_attn_aud``, ``res_conv``, ``to_qkv``, ``to_out``, ``gamma``); the reference's
``Residual(PreNorm(fn))`` nesting is flattened into ``PreNormResidual`` (``norm``, ``attn``), see
``unet3d.convert_reference_state_dict``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dawn_lightning.models.audio_to_motion.conditioning import NullOrTokenAttention, layer_norm_last


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer sinusoids of the diffusion step (Vaswani et al. 2017): t (B,) -> (B, dim) = [sin, cos]."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2 or dim < 4:
            raise ValueError(f"time embedding dim must be even and >= 4, got {dim}")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        angles = t[:, None].float() * freqs[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


def _check_per_frame(conv: nn.Conv3d | nn.ConvTranspose3d) -> None:
    if (
        conv.kernel_size[0] != 1
        or conv.stride[0] != 1
        or conv.padding[0] != 0
        or conv.padding_mode != "zeros"
    ):
        raise ValueError("a per-frame convolution needs kernel, stride 1 and padding 0 along the frames")


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B * F, C, H, W) in channels-last memory: a view of a channels_last_3d video."""
    frames = rearrange(x, "b c f h w -> (b f) c h w")
    return frames.contiguous(memory_format=torch.channels_last)


def _video(frames: torch.Tensor, batch: int) -> torch.Tensor:
    """(B * F, C, H, W) -> (B, C, F, H, W) in channels_last_3d memory (a view of channels-last frames)."""
    video = rearrange(frames, "(b f) c h w -> b c f h w", b=batch)
    return video.contiguous(memory_format=torch.channels_last_3d)


def _tokens_to_video(tokens: torch.Tensor, batch: int, height: int) -> torch.Tensor:
    """(B * F, H * W, C) -> (B, C, F, H, W) in channels_last_3d memory (a view of contiguous tokens)."""
    return _video(rearrange(tokens, "n (h w) c -> n c h w", h=height), batch)


class FrameConv3d(nn.Conv3d):
    """A Conv3d with kernel (1, k, k), computed as a 2-D convolution of every frame (frames folded into the
    batch): the same function and parameters, 2-3x faster than PyTorch's CPU Conv3d for these shapes.
    (B, C_in, F, H, W) -> (B, C_out, F, H', W')."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _check_per_frame(self)

    def forward(self, x: torch.Tensor, static: torch.Tensor | None = None) -> torch.Tensor:
        """``static`` (B, C_s, H, W): input channels that are the same in every frame, the last C_s of C_in;
        ``x`` then holds only the first C_in - C_s. The convolution is linear, so their part is computed once
        per clip instead of once per frame (the stage-3 stem: 272 of its 275 input channels)."""
        weight = self.weight.squeeze(2)
        frames = _frames(x)
        if static is None:
            return _video(F.conv2d(frames, weight, self.bias, self.stride[1:], self.padding[1:]), x.shape[0])
        split = weight.shape[1] - static.shape[1]
        per_frame = F.conv2d(frames, weight[:, :split], None, self.stride[1:], self.padding[1:])
        shared = F.conv2d(static, weight[:, split:], self.bias, self.stride[1:], self.padding[1:])
        out = _video(per_frame, x.shape[0]) + shared[:, :, None]
        return out.contiguous(memory_format=torch.channels_last_3d)


class FrameConvTranspose3d(nn.ConvTranspose3d):
    """A ConvTranspose3d with kernel (1, k, k), computed frame by frame as ``FrameConv3d``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _check_per_frame(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.squeeze(2)
        out = F.conv_transpose2d(_frames(x), weight, self.bias, self.stride[1:], self.padding[1:])
        return _video(out, x.shape[0])


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of (B, C, F, H, W), gain ``gamma`` (1, C, 1, 1, 1), no bias, eps 1e-5."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = rearrange(self.gamma, "1 c 1 1 1 -> c")
        return F.layer_norm(x.movedim(1, -1), gain.shape, gain, eps=self.eps).movedim(-1, 1)


class PreNormResidual(nn.Module):
    """x + attn(norm(x), **kwargs) for (B, C, F, H, W) tensors."""

    def __init__(self, dim: int, attn: nn.Module):
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.attn = attn

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return x + self.attn(self.norm(x), **kwargs)


class SpatialLinearAttention(nn.Module):
    """Linear attention over the h * w positions of each frame (Shen et al. 2021, "Efficient Attention",
    arXiv 1812.01243; Katharopoulos et al. 2020, arXiv 2006.16236): softmax of the queries over features and
    of the keys over positions, out = q^T (k v^T), O(h w d^2). (B, C, F, H, W) -> same shape."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 32):
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, 3 * hidden, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _, h, _ = x.shape
        tokens = rearrange(x, "b c f h w -> (b f) (h w) c")
        qkv = F.linear(tokens, self.to_qkv.weight.flatten(1))
        q, k, v = rearrange(qkv, "n l (three h d) -> three n h l d", three=3, h=self.heads)
        q = q.softmax(dim=-1) * self.scale
        k = k.softmax(dim=-2)
        context = k.transpose(-1, -2) @ v  # (n, heads, d, e)
        out = rearrange(q @ context, "n h l e -> n l (h e)")
        return _tokens_to_video(F.linear(out, self.to_out.weight.flatten(1), self.to_out.bias), b, h)


class SpatialAttention(nn.Module):
    """Full softmax self-attention over the h * w positions of each frame, no position encoding (the U-Net's
    middle). Linear(C, 3 * heads * dim_head) and Linear(heads * dim_head, C), no biases.
    (B, C, F, H, W) -> same shape."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 32):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _, h, _ = x.shape
        tokens = rearrange(x, "b c f h w -> (b f) (h w) c")
        q, k, v = rearrange(self.to_qkv(tokens), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "n h l d -> n l (h d)")
        return _tokens_to_video(self.to_out(out), b, h)


class ConvBlock(nn.Module):
    """Conv3d (1, 3, 3) -> GroupNorm -> optional (1 + scale, shift) -> SiLU.
    (B, C_in, F, H, W) -> (B, C_out, F, H, W)."""

    def __init__(self, dim: int, dim_out: int, groups: int = 8):
        super().__init__()
        self.proj = FrameConv3d(dim, dim_out, (1, 3, 3), padding=(0, 1, 1))
        self.norm = nn.GroupNorm(groups, dim_out)

    def forward(
        self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        x = self.norm(self.proj(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return F.silu(x)


class ConditionedResBlock(nn.Module):
    """DAWN's ResBlock (reference ``ResnetBlock_ca_mul``): two ConvBlocks, the diffusion-step embedding as a
    scale/shift of the first, and three per-frame cross-attentions (audio, pose delta, blink delta) from the
    layer-normalised block input to [null token, the frame's condition token], summed and added after the
    first ConvBlock; 1x1x1 residual convolution when the widths differ.

    time_dim None: no step embedding. cond_dims None: no conditioning (the U-Net's output heads; the reference
    allocates, but never uses, their cross-attentions). cond_dims = (audio, pose, blink) widths; each
    condition goes through SiLU + Linear to 2 * dim_out, the context of its cross-attention.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        time_dim: int | None = None,
        cond_dims: tuple[int, int, int] | None = None,
        groups: int = 8,
        cross_heads: int = 8,
        cross_dim_head: int = 8,
    ):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * dim_out)) if time_dim else None
        self.block1 = ConvBlock(dim, dim_out, groups)
        self.block2 = ConvBlock(dim_out, dim_out, groups)
        self.res_conv = FrameConv3d(dim, dim_out, 1) if dim != dim_out else nn.Identity()
        self.conditioned = cond_dims is not None
        if cond_dims is not None:
            audio_dim, pose_dim, blink_dim = cond_dims
            context = 2 * dim_out
            self.audio_mlp = nn.Sequential(nn.SiLU(), nn.Linear(audio_dim, context))
            self.pose_mlp = nn.Sequential(nn.SiLU(), nn.Linear(pose_dim, context))
            # "eye": the reference's name for the blink (eye aspect ratio) condition.
            self.eye_mlp = nn.Sequential(nn.SiLU(), nn.Linear(blink_dim, context))
            self.cross_attn_aud = NullOrTokenAttention(dim, context, dim_out, cross_heads, cross_dim_head)
            self.cross_attn_pose = NullOrTokenAttention(dim, context, dim_out, cross_heads, cross_dim_head)
            self.cross_attn_eye = NullOrTokenAttention(dim, context, dim_out, cross_heads, cross_dim_head)

    def _condition(
        self, x: torch.Tensor, conds: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """x (B, C, F, H, W), conds audio/pose/blink (B, F, D_*)
        -> summed cross-attentions (B, C_out, F, H, W)."""
        b, _, _, h, _ = x.shape
        normed = layer_norm_last(rearrange(x, "b c f h w -> (b f) (h w) c"))
        total = None
        for cond, mlp, attn in zip(
            conds,
            (self.audio_mlp, self.pose_mlp, self.eye_mlp),
            (self.cross_attn_aud, self.cross_attn_pose, self.cross_attn_eye),
            strict=True,
        ):
            out = attn(normed, mlp(rearrange(cond, "b f d -> (b f) d")))
            total = out if total is None else total + out
        return _tokens_to_video(total, b, h)

    def forward(
        self,
        x: torch.Tensor,
        time_emb: torch.Tensor | None = None,
        conds: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x (B, C_in, F, H, W), time_emb (B, time_dim), conds (audio, pose, blink) each (B, F, D_*)
        -> (B, C_out, F, H, W)."""
        scale_shift = None
        if self.time_mlp is not None:
            if time_emb is None:
                raise ValueError("this block needs the step embedding")
            scale_shift = rearrange(self.time_mlp(time_emb), "b c -> b c 1 1 1").chunk(2, dim=1)
        h = self.block1(x, scale_shift)
        if self.conditioned:
            if conds is None:
                raise ValueError("this block needs the (audio, pose, blink) conditions")
            h = h + self._condition(x, conds)
        return self.block2(h) + self.res_conv(x)


def downsample(dim: int) -> FrameConv3d:
    """Halves H and W: Conv3d (1, 4, 4), stride (1, 2, 2), padding (0, 1, 1)."""
    return FrameConv3d(dim, dim, (1, 4, 4), (1, 2, 2), (0, 1, 1))


def upsample(dim: int) -> FrameConvTranspose3d:
    """Doubles H and W: ConvTranspose3d (1, 4, 4), stride (1, 2, 2), padding (0, 1, 1)."""
    return FrameConvTranspose3d(dim, dim, (1, 4, 4), (1, 2, 2), (0, 1, 1))
