"""Pixelwise flow predictor: combines per-region motions into one dense sampling grid + occlusion (MRAA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from dawn_lightning.models.common.blocks import AntiAliasDownsample, Hourglass
from dawn_lightning.models.motion.geometry import apply_homogeneous, coordinate_grid, region_gaussians
from dawn_lightning.models.motion.region_predictor import RegionParams


class PixelwiseFlowPredictor(nn.Module):
    """source (B, 3, H, W) + region params of source and driving + background affine ->
    grid (B, h, w, 2) in [-1, 1] (where each output position samples the source) and occlusion (B, 1, h, w),
    at ``scale_factor`` resolution.

    Each region k proposes the motion z -> A_src A_drv^-1 (z - shift_drv) + shift_src (the background
    proposes its affine); an hourglass over the Gaussian heatmap differences and the source warped by
    every proposal predicts a softmax mask that blends the K + 1 proposals.
    """

    def __init__(
        self,
        num_regions: int = 10,
        num_channels: int = 3,
        block_expansion: int = 64,
        max_features: int = 1024,
        num_blocks: int = 5,
        scale_factor: float = 0.25,
        revert_axis_swap: bool = True,
    ):
        super().__init__()
        in_features = (num_regions + 1) * (num_channels + 1)
        self.hourglass = Hourglass(block_expansion, in_features, num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_regions + 1, kernel_size=7, padding=3)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
        self.down = AntiAliasDownsample(num_channels, scale_factor)
        self.revert_axis_swap = revert_axis_swap

    def sparse_motions(
        self, height: int, width: int, driving: RegionParams, source: RegionParams, background: torch.Tensor
    ) -> torch.Tensor:
        """The K + 1 candidate sampling grids (B, K + 1, h, w, 2), background first."""
        grid = coordinate_grid(height, width, background.device, background.dtype)
        relative = source["affine"] @ torch.linalg.inv(driving["affine"])
        if self.revert_axis_swap:  # keep the relative transform from mirroring when eigenvector signs differ
            relative = relative * torch.sign(relative[..., :1, :1])
        centred = grid[None, None] - driving["shift"][:, :, None, None]
        regions = torch.einsum("bkij,bkhwj->bkhwi", relative, centred) + source["shift"][:, :, None, None]
        return torch.cat([apply_homogeneous(background, grid)[:, None], regions], dim=1)

    def forward(
        self,
        source_image: torch.Tensor,
        driving: RegionParams,
        source: RegionParams,
        background: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        image = self.down(source_image)
        batch, _, height, width = image.shape
        heatmaps = region_gaussians(driving["shift"], driving["covar"], height, width) - region_gaussians(
            source["shift"], source["covar"], height, width
        )
        heatmaps = F.pad(heatmaps, (0, 0, 0, 0, 1, 0))  # a zero map for the background
        motions = self.sparse_motions(height, width, driving, source, background)
        warped = F.grid_sample(
            repeat(image, "b c h w -> (b k) c h w", k=motions.shape[1]),
            rearrange(motions, "b k h w i -> (b k) h w i"),
            align_corners=False,
        )
        warped = rearrange(warped, "(b k) c h w -> b k c h w", b=batch)
        features = self.hourglass(
            rearrange(torch.cat([heatmaps[:, :, None], warped], dim=2), "b k c h w -> b (k c) h w")
        )
        mask = self.mask(features).softmax(dim=1)
        flow = torch.einsum("bkhw,bkhwi->bhwi", mask, motions)
        return {"grid": flow, "occlusion": torch.sigmoid(self.occlusion(features)), "mask": mask}
