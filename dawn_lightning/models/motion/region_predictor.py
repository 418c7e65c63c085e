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
        return heatmap_moments(rearrange(heatmap, "b k (h w) -> b k h w", h=height))


def heatmap_moments(heatmap: torch.Tensor) -> RegionParams:
    """Normalised heatmaps (B, K, h, w) -> their params: shift (B, K, 2) and covar (B, K, 2, 2), the first two
    moments in ``coordinate_grid`` coordinates, and affine = U sqrt(S) of the covariance."""
    grid = coordinate_grid(*heatmap.shape[2:], heatmap.device, heatmap.dtype)
    shift = torch.einsum("bkhw,hwi->bki", heatmap, grid)
    centred = grid[None, None] - shift[:, :, None, None]
    covar = torch.einsum("bkhw,bkhwi,bkhwj->bkij", heatmap, centred, centred)
    return {"heatmap": heatmap, "shift": shift, "covar": covar, "affine": covariance_sqrt(covar)}


def box_region_loss(regions: RegionParams, boxes: torch.Tensor, index: int = 0) -> torch.Tensor:
    """L1 between region ``index``'s moments and those of a uniform box: a landmark-guided region.

    boxes: (B, 4) normalised (x0, y0, x1, y1) image boxes, e.g. the mouth's. The target shift is the box
    centre and the target standard deviations along x and y are width / sqrt(12) and height / sqrt(12), all
    in the heatmap's [-1, 1] cell-centre coordinates (``coordinate_grid``). Guiding one region onto the mouth
    hands the flow predictor the mouth's opening as that region's vertical scale, information an unguided
    region predictor learns only after long training.
    """
    heatmap = regions["heatmap"]
    height, width = heatmap.shape[2:]
    size = torch.tensor([width, height], dtype=boxes.dtype, device=boxes.device)
    # Normalised image u (pixel centres at (i + 0.5) / n) -> grid x = -1 + 2 (u n - 0.5) / (n - 1).
    scale = 2 * size / (size - 1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 * scale - (1 + 1 / (size - 1))
    std = (boxes[:, 2:] - boxes[:, :2]) * scale / 12**0.5
    shift = regions["shift"][:, index]
    predicted_std = regions["covar"][:, index].diagonal(dim1=-2, dim2=-1).clamp_min(1e-8).sqrt()
    return (shift - centre).abs().mean() + (predicted_std - std).abs().mean()
