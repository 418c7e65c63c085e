"""The stage-1 motion autoencoder (DAWN's latent flow generator): region predictor, background motion,
pixelwise flow predictor and generator behind the API that stage 3 and inference use."""

from __future__ import annotations

import torch
from torch import nn

from dawn_lightning.models.motion.bg_motion import BackgroundMotionPredictor
from dawn_lightning.models.motion.flow_predictor import PixelwiseFlowPredictor
from dawn_lightning.models.motion.generator import Generator, SourceEncoding, warp
from dawn_lightning.models.motion.region_predictor import RegionParams, RegionPredictor


class MotionAutoencoder(nn.Module):
    """source + driving (B, 3, S, S) in [0, 1] -> sampling grid (B, S/4, S/4, 2) + occlusion (B, 1, S/4, S/4)
    -> reconstructed driving frame.

    - ``encode(source)``: the source's encoder features; ``.z`` is z_src (B, z_channels, S/4, S/4).
    - ``motion(source, driving)``: grid and occlusion, the motion representation stage 3 generates.
    - ``decode(source or encoding, grid, occlusion, batch_size)``: frames for any number of grids; a single
      source is shared by all of them and encoded once.

    Sizes are plain constructor arguments (recorded in ``config``, so a checkpoint can rebuild the network).
    The parameter names match the reference implementation, so its weights load without renaming. All
    normalisation is BatchNorm: a frozen model must stay in eval mode (stage 3 keeps it there).
    """

    def __init__(
        self,
        num_regions: int = 10,
        num_channels: int = 3,
        temperature: float = 0.1,
        scale_factor: float = 0.25,
        revert_axis_swap: bool = True,
        region: dict | None = None,
        background: dict | None = None,
        flow: dict | None = None,
        generator: dict | None = None,
    ):
        super().__init__()
        region = {"block_expansion": 32, "max_features": 1024, "num_blocks": 5} | (region or {})
        background = {"block_expansion": 32, "max_features": 1024, "num_blocks": 5} | (background or {})
        flow = {"block_expansion": 64, "max_features": 1024, "num_blocks": 5} | (flow or {})
        generator = {
            "block_expansion": 64,
            "max_features": 512,
            "num_down_blocks": 2,
            "num_bottleneck_blocks": 6,
        } | (generator or {})
        self.config = {
            "num_regions": num_regions,
            "num_channels": num_channels,
            "temperature": temperature,
            "scale_factor": scale_factor,
            "revert_axis_swap": revert_axis_swap,
            "region": region,
            "background": background,
            "flow": flow,
            "generator": generator,
        }
        self.region_predictor = RegionPredictor(
            num_regions, num_channels, temperature=temperature, scale_factor=scale_factor, **region
        )
        self.bg_predictor = BackgroundMotionPredictor(num_channels, **background)
        flow_predictor = PixelwiseFlowPredictor(
            num_regions, num_channels, scale_factor=scale_factor, revert_axis_swap=revert_axis_swap, **flow
        )
        self.generator = Generator(num_channels, flow_predictor=flow_predictor, **generator)

    @property
    def z_channels(self) -> int:
        return self.generator.z_channels

    def encode(self, source: torch.Tensor) -> SourceEncoding:
        return self.generator.encode(source)

    def regions(self, image: torch.Tensor) -> RegionParams:
        return self.region_predictor(image)

    def motion(
        self,
        source: torch.Tensor,
        driving: torch.Tensor,
        source_regions: RegionParams | None = None,
        driving_regions: RegionParams | None = None,
    ) -> dict[str, torch.Tensor]:
        """Driving vs source: grid (B, h, w, 2), occlusion (B, 1, h, w), blending mask (B, K + 1, h, w)."""
        source_regions = source_regions or self.regions(source)
        driving_regions = driving_regions or self.regions(driving)
        background = self.bg_predictor(source, driving)
        return self.generator.pixelwise_flow_predictor(source, driving_regions, source_regions, background)

    def decode(
        self,
        source: torch.Tensor | SourceEncoding,
        grid: torch.Tensor,
        occlusion: torch.Tensor,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Frames (N, 3, S, S) for N grids/occlusions; ``source`` has N rows or one shared row."""
        encoding = source if isinstance(source, SourceEncoding) else self.encode(source)
        if len(encoding) not in (1, len(grid)):
            raise ValueError(
                f"{len(encoding)} sources for {len(grid)} grids: need one source or one per grid"
            )
        step = batch_size or len(grid)
        frames = []
        for start in range(0, len(grid), step):
            stop = min(start + step, len(grid))
            chunk = encoding.take(start, stop, stop - start)
            frames.append(self.generator.decode(chunk, grid[start:stop], occlusion[start:stop]))
        return torch.cat(frames)

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruct ``driving`` from ``source``: prediction, grid, occlusion, mask, warped source and the
        region params of both frames (for the equivariance losses and logging)."""
        source_regions, driving_regions = self.regions(source), self.regions(driving)
        motion = self.motion(source, driving, source_regions, driving_regions)
        encoding = self.encode(source)
        prediction = self.generator.decode(encoding, motion["grid"], motion["occlusion"])
        return motion | {
            "prediction": prediction,
            "warped": warp(source, motion["grid"]),
            "source_regions": source_regions,
            "driving_regions": driving_regions,
        }
