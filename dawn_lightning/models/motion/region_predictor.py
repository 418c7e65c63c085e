"""Region predictor: K soft regions of an image and each region's shift and affine frame (MRAA)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from dawn_lightning.models.common.blocks import AntiAliasDownsample, Hourglass
from dawn_lightning.models.motion.geometry import coordinate_grid, covariance_sqrt

RegionParams = dict[str, torch.Tensor]


class RegionPredictor(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> heatmap (B, K, h, w), shift (B, K, 2), covar and affine (B, K, 2, 2).

    The hourglass runs on the anti-aliased ``scale_factor`` downscale; heatmaps are a spatial softmax with
    ``temperature``; shift and covariance are the heatmap's first two moments; affine = U sqrt(S) from the
    covariance's eigen-decomposition, computed in closed form on the tensor's device.
    """

    def __init__(
        self,
        num_regions: int = 10,
        num_channels: int = 3,
        block_expansion: int = 32,
        max_features: int = 1024,
        num_blocks: int = 5,
        temperature: float = 0.1,
        scale_factor: float = 0.25,
        pad: int = 3,
    ):
        super().__init__()
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.regions = nn.Conv2d(self.predictor.out_filters, num_regions, kernel_size=7, padding=pad)
        self.down = AntiAliasDownsample(num_channels, scale_factor)
        self.temperature = temperature

    def forward(self, image: torch.Tensor) -> RegionParams:
        logits = self.regions(self.predictor(self.down(image)))
        height, width = logits.shape[2:]
        heatmap = rearrange(logits, "b k h w -> b k (h w)").div(self.temperature).softmax(dim=-1)
        heatmap = rearrange(heatmap, "b k (h w) -> b k h w", h=height)
        grid = coordinate_grid(height, width, image.device, heatmap.dtype)
        shift = torch.einsum("bkhw,hwi->bki", heatmap, grid)
        centred = grid[None, None] - shift[:, :, None, None]
        covar = torch.einsum("bkhw,bkhwi,bkhwj->bkij", heatmap, centred, centred)
        return {"heatmap": heatmap, "shift": shift, "covar": covar, "affine": covariance_sqrt(covar)}
