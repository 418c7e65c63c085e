"""The A2V-FDM denoiser of DAWN (Cheng et al. 2024, arXiv 2410.13726): a factorised space-time 3-D U-Net
(Ho et al. 2022, "Video Diffusion Models", arXiv 2204.03458) over the motion sequence, conditioned per frame
on audio, pose delta and blink delta through cross-attention in every ResBlock.

Input x (B, C_in, F, h, w): channel-wise concatenation, done by the caller, of the noisy motion x_t (3
channels: grid x, grid y, 2 * occlusion - 1), the source feature z_src and the face-region embedding, both
repeated over the F frames. Output (B, 3, F, h, w): the flow head's 2 channels then the occlusion head's 1
(the layout of x0).

Architecture (reference ``DynamicNfUnet3D``): Conv3d (1, 7, 7) stem + temporal attention; per level two
``ConditionedResBlock``s, spatial linear attention, temporal attention, spatial downsampling (all but the last
level); middle: block, full spatial attention, temporal attention, block; the mirrored up path with skip
concatenation and transposed-convolution upsampling; the stem convolution's output (taken before the stem's
temporal attention) is concatenated before two unconditioned output ResBlocks + 1x1x1 convolutions (flow,
occlusion). Temporal attention is banded (|i - j| <= window) with RoPE and one shared T5 relative-position
bias. Every convolution is (1, k, k): frames interact only in the temporal attentions and through GroupNorm's
statistics, which span all frames.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from einops import rearrange
from torch import nn

from dawn_lightning.models.audio_to_motion.blocks import (
    ConditionedResBlock,
    FrameConv3d,
    PreNormResidual,
    SinusoidalTimeEmbedding,
    SpatialAttention,
    SpatialLinearAttention,
    downsample,
    upsample,
)
from dawn_lightning.models.audio_to_motion.temporal_attention import TemporalAttention
from dawn_lightning.models.common.relative_position import RelativePositionBias

Conditions = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class UNet3D(nn.Module):
    """A2V-FDM denoiser: x (B, C_in, F, h, w), t (B,), audio (B, F, D_a), pose (B, F, D_p),
    blink (B, F, D_b) -> predicted noise (B, out_grid + out_conf, F, h, w).
    h and w must be divisible by 2^(len(dim_mults) - 1).

    dim: width of the first level (DAWN: 64); level widths dim * dim_mults; step embedding 4 * dim.
    channels: C_in (DAWN 128 px: 3 + 256 + 16 = 275).
    cond_audio, cond_pose, cond_blink: per-frame condition widths (DAWN: 1024 HuBERT, 6, 2).
    attn_heads, attn_dim_head: heads of the temporal attentions and their width; the spatial (linear and
        middle) attentions use attn_heads x spatial_dim_head; the cross-attentions cross_heads x
        cross_dim_head (the reference fixes 32 and 8 x 8).
    window: temporal attention band |i - j| <= window (DAWN: 40); None for full attention.
    learn_null_cond: dropped conditions are replaced by a learned null condition ``null_cond_emb`` (1, cond
        widths summed) if True, by zeros if False (the reference and its released checkpoints).
    """

    def __init__(
        self,
        dim: int = 64,
        dim_mults: tuple[int, ...] = (1, 2, 4, 8),
        channels: int = 275,
        cond_audio: int = 1024,
        cond_pose: int = 6,
        cond_blink: int = 2,
        out_grid_dim: int = 2,
        out_conf_dim: int = 1,
        attn_heads: int = 8,
        attn_dim_head: int = 32,
        spatial_dim_head: int = 32,
        cross_heads: int = 8,
        cross_dim_head: int = 8,
        resnet_groups: int = 8,
        init_kernel_size: int = 7,
        window: int | None = 40,
        rel_pos_buckets: int = 32,
        rel_pos_max_distance: int = 32,
        learn_null_cond: bool = True,
    ):
        super().__init__()
        dim_mults = tuple(int(m) for m in dim_mults)
        self.config: dict[str, Any] = {
            "dim": dim,
            "dim_mults": list(dim_mults),
            "channels": channels,
            "cond_audio": cond_audio,
            "cond_pose": cond_pose,
            "cond_blink": cond_blink,
            "out_grid_dim": out_grid_dim,
            "out_conf_dim": out_conf_dim,
            "attn_heads": attn_heads,
            "attn_dim_head": attn_dim_head,
            "spatial_dim_head": spatial_dim_head,
            "cross_heads": cross_heads,
            "cross_dim_head": cross_dim_head,
            "resnet_groups": resnet_groups,
            "init_kernel_size": init_kernel_size,
            "window": window,
            "rel_pos_buckets": rel_pos_buckets,
            "rel_pos_max_distance": rel_pos_max_distance,
            "learn_null_cond": learn_null_cond,
        }
        self.channels = channels
        self.cond_dims = (cond_audio, cond_pose, cond_blink)
        self.num_downsamples = len(dim_mults) - 1
        time_dim = 4 * dim
        cond_dims = self.cond_dims

        def res_block(dim_in: int, dim_out: int) -> ConditionedResBlock:
            return ConditionedResBlock(
                dim_in, dim_out, time_dim, cond_dims, resnet_groups, cross_heads, cross_dim_head
            )

        def temporal(width: int) -> PreNormResidual:
            return PreNormResidual(width, TemporalAttention(width, attn_heads, attn_dim_head, window))

        def spatial_linear(width: int) -> PreNormResidual:
            return PreNormResidual(width, SpatialLinearAttention(width, attn_heads, spatial_dim_head))

        self.time_rel_pos_bias = RelativePositionBias(attn_heads, rel_pos_buckets, rel_pos_max_distance)
        pad = init_kernel_size // 2
        self.init_conv = FrameConv3d(
            channels, dim, (1, init_kernel_size, init_kernel_size), padding=(0, pad, pad)
        )
        self.init_temporal_attn = temporal(dim)
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(dim), nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )
        self.null_cond_emb = nn.Parameter(torch.randn(1, sum(cond_dims))) if learn_null_cond else None

        widths = [dim, *(dim * m for m in dim_mults)]
        in_out = list(zip(widths[:-1], widths[1:], strict=True))
        self.downs = nn.ModuleList()
        for level, (dim_in, dim_out) in enumerate(in_out):
            last = level == len(in_out) - 1
            self.downs.append(
                nn.ModuleList(
                    [
                        res_block(dim_in, dim_out),
                        res_block(dim_out, dim_out),
                        spatial_linear(dim_out),
                        temporal(dim_out),
                        nn.Identity() if last else downsample(dim_out),
                    ]
                )
            )
        mid = widths[-1]
        self.mid_block1 = res_block(mid, mid)
        self.mid_spatial_attn = PreNormResidual(mid, SpatialAttention(mid, attn_heads, spatial_dim_head))
        self.mid_temporal_attn = temporal(mid)
        self.mid_block2 = res_block(mid, mid)
        self.ups = nn.ModuleList()
        for level, (dim_in, dim_out) in enumerate(reversed(in_out)):
            last = level == len(in_out) - 1
            self.ups.append(
                nn.ModuleList(
                    [
                        res_block(2 * dim_out, dim_in),
                        res_block(dim_in, dim_in),
                        spatial_linear(dim_in),
                        temporal(dim_in),
                        nn.Identity() if last else upsample(dim_in),
                    ]
                )
            )
        self.final_conv = nn.Sequential(
            ConditionedResBlock(2 * dim, dim, groups=resnet_groups), FrameConv3d(dim, out_grid_dim, 1)
        )
        self.occlusion_map = nn.Sequential(
            ConditionedResBlock(2 * dim, dim, groups=resnet_groups), FrameConv3d(dim, out_conf_dim, 1)
        )

    @property
    def temporal_depth(self) -> int:
        """Temporal attentions on the longest path from input to output (each widens the receptive field by
        ``window`` frames)."""
        return 2 + 2 * len(self.downs)

    def _null_conditions(self, conds: Conditions, drop_mask: torch.Tensor | None) -> Conditions:
        """Replaces the conditions of dropped frames (drop_mask (B, F) or (B,), True = dropped) by the null
        condition (learned or zeros)."""
        if drop_mask is None:
            return conds
        b, f = conds[0].shape[:2]
        if drop_mask.dim() == 1:
            drop_mask = drop_mask[:, None].expand(b, f)
        if drop_mask.shape != (b, f):
            raise ValueError(f"drop_mask must be (B,) or (B, F) = {(b, f)}, got {tuple(drop_mask.shape)}")
        dropped = rearrange(drop_mask.bool(), "b f -> b f 1")
        cond = torch.cat(conds, dim=-1)
        null = self.null_cond_emb.to(cond.dtype) if self.null_cond_emb is not None else torch.zeros_like(cond)
        cond = torch.where(dropped, null, cond)
        return tuple(cond.split(self.cond_dims, dim=-1))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        audio: torch.Tensor,
        pose: torch.Tensor,
        blink: torch.Tensor,
        drop_mask: torch.Tensor | None = None,
        static: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, C_in, F, h, w), t (B,) diffusion steps, audio (B, F, D_a), pose (B, F, D_p), blink (B, F,
        D_b), drop_mask (B, F) or (B,) bool, True where the conditions are dropped (classifier-free guidance)
        -> (B, out_grid + out_conf, F, h, w).

        static (B, C_s, h, w): the last C_s input channels when they are the same in every frame (z_src and
        the face embedding); x then holds the first C_in - C_s. Same result as repeating them over the frames,
        without convolving them F times."""
        b, c, f, h, w = x.shape
        c_static = 0 if static is None else static.shape[1]
        if c + c_static != self.channels:
            raise ValueError(f"expected {self.channels} input channels, got {c} + {c_static} static")
        factor = 2**self.num_downsamples
        if h % factor or w % factor:
            raise ValueError(f"h and w must be divisible by {factor}, got {h} x {w}")
        for name, cond, width in zip(
            ("audio", "pose", "blink"), (audio, pose, blink), self.cond_dims, strict=True
        ):
            if cond.shape != (b, f, width):
                raise ValueError(f"{name} must be (B, F, {width}) = {(b, f, width)}, got {tuple(cond.shape)}")
        conds = self._null_conditions((audio, pose, blink), drop_mask)
        bias = self.time_rel_pos_bias

        stem = self.init_conv(x, static)
        x = self.init_temporal_attn(stem, pos_bias=bias)
        time_emb = self.time_mlp(t)
        skips = []
        for block1, block2, spatial_attn, temporal_attn, down in self.downs:
            x = block2(block1(x, time_emb, conds), time_emb, conds)
            x = temporal_attn(spatial_attn(x), pos_bias=bias)
            skips.append(x)
            x = down(x)
        x = self.mid_block1(x, time_emb, conds)
        x = self.mid_temporal_attn(self.mid_spatial_attn(x), pos_bias=bias)
        x = self.mid_block2(x, time_emb, conds)
        for block1, block2, spatial_attn, temporal_attn, up in self.ups:
            x = torch.cat((x, skips.pop()), dim=1)
            x = block2(block1(x, time_emb, conds), time_emb, conds)
            x = up(temporal_attn(spatial_attn(x), pos_bias=bias))
        x = torch.cat((x, stem), dim=1)
        # the blocks work in channels_last_3d memory; the 3 output channels go back to the default layout
        return torch.cat((self.final_conv(x), self.occlusion_map(x)), dim=1).contiguous()

    def forward_with_cond_scale(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        audio: torch.Tensor,
        pose: torch.Tensor,
        blink: torch.Tensor,
        cond_scale: float = 1.0,
    ) -> torch.Tensor:
        """Classifier-free guidance (Ho & Salimans 2022): null + cond_scale * (cond - null); one pass if
        cond_scale == 1."""
        out = self(x, t, audio, pose, blink)
        if cond_scale == 1.0:
            return out
        dropped = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        null = self(x, t, audio, pose, blink, drop_mask=dropped)
        return null + cond_scale * (out - null)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> UNet3D:
        """Rebuilds the network from ``self.config``."""
        return cls(**{**config, "dim_mults": tuple(config["dim_mults"])})


_OUTPUT_HEAD_CROSS_ATTN = re.compile(r"^(final_conv|occlusion_map)\.0\.(cross_attn_\w+)\.")


def convert_reference_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Maps a reference ``DynamicNfUnet3D`` state dict (DAWN, ``denoise_fn.*`` / ``unet.*`` prefix removed) to
    ``UNet3D``'s names. The only differences: ``Residual(PreNorm(fn))`` is ``PreNormResidual`` here
    (``X.fn.norm.`` -> ``X.norm.``; ``X.fn.fn.`` and ``X.fn.fn.fn.`` -> ``X.attn.``), and the never-used
    cross-attentions of the two output heads are dropped. Load the result with ``learn_null_cond=False``
    (the reference's default) and ``strict=True``.
    """
    converted = {}
    for key, value in state.items():
        if _OUTPUT_HEAD_CROSS_ATTN.match(key):
            continue
        key = key.replace(".fn.fn.fn.", ".attn.").replace(".fn.fn.", ".attn.").replace(".fn.norm.", ".norm.")
        converted[key] = value
    return converted
