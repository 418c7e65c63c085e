"""Random warps and the equivariance losses that make region estimates consistent under them.

The transform is FOMM's random affine + thin-plate-spline warp (Siarohin et al. 2019, "First Order Motion
Model for Image Animation"); the losses are the shift and affine equivariance terms of MRAA (Siarohin et al.
2021, "Motion Representations for Articulated Animation"). Coordinates are in [-1, 1], last axis (x, y).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from dawn_lightning.models.motion.geometry import coordinate_grid

TPS_EPS = 1e-6


class RandomTPS:
    """A random affine + thin-plate-spline warp per batch element (FOMM's ``Transform``).

    warp(c) = A c + t + sum_k w_k r_k^2 log(r_k + eps) * (1, 1), with A = I + N(0, sigma_affine), t ~
    N(0, sigma_affine), w_k ~ N(0, sigma_tps) and r_k = |c - p_k|_1 the L1 distance to the k-th control point
    of a points_tps x points_tps grid over [-1, 1]^2 (the TPS term moves x and y alike, as in FOMM).
    """

    def __init__(
        self,
        batch_size: int,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        generator: torch.Generator | None = None,
        device=None,
        draws=None,
    ):
        """``draws`` (`data.sampling.SampleDraws`): each element's warp drawn from its sample's generator;
        otherwise all from ``generator`` (or torch's RNG)."""
        sample_device = generator.device if generator is not None else device
        if draws is not None:
            noise, tps = draws.randn(2, 3).to(device), draws.randn(points_tps**2).to(device)
            sample_device = device
        else:
            noise = torch.randn(batch_size, 2, 3, generator=generator, device=sample_device)
            tps = torch.randn(batch_size, points_tps**2, generator=generator, device=sample_device)
        self.batch_size = batch_size
        self.theta = (sigma_affine * noise + torch.eye(2, 3, device=sample_device)).to(device)  # (B, 2, 3)
        self.control_params = (sigma_tps * tps).to(device)  # (B, P)
        grid = coordinate_grid(points_tps, points_tps, device=device)
        self.control_points = rearrange(grid, "h w xy -> (h w) xy")  # (P, 2)

    def _tps_terms(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets to the control points (B, N, P, 2) and their L1 norms r (B, N, P)."""
        offsets = coords[:, :, None, :] - self.control_points.to(coords)
        return offsets, offsets.abs().sum(-1)

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """(B or 1, N, 2) -> (B, N, 2): the warped coordinates."""
        theta = self.theta.to(coords)
        warped = torch.einsum("bij,bnj->bni", theta[:, :, :2], coords.expand(self.batch_size, -1, -1))
        warped = warped + theta[:, None, :, 2]
        _, r = self._tps_terms(coords)
        tps = (self.control_params.to(coords)[:, None, :] * r**2 * torch.log(r + TPS_EPS)).sum(-1)  # (B, N)
        return warped + tps[..., None]

    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """(B or 1, N, 2) -> (B, N, 2, 2): d warp_i / d coord_j (analytic, differentiable)."""
        offsets, r = self._tps_terms(coords)
        dphi_dr = 2 * r * torch.log(r + TPS_EPS) + r**2 / (r + TPS_EPS)  # (B, N, P)
        weighted = self.control_params.to(coords)[:, None, :] * dphi_dr
        tps_grad = (weighted[..., None] * offsets.sign()).sum(2)  # (B, N, 2): gradient of the shared TPS term
        affine = self.theta.to(coords)[:, None, :, :2]  # (B, 1, 2, 2)
        return affine + tps_grad[:, :, None, :]

    def transform_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): the frame resampled at the warped pixel grid (reflection padding)."""
        height, width = frame.shape[2:]
        grid = coordinate_grid(height, width, device=frame.device, dtype=frame.dtype)
        warped = self.warp_coordinates(rearrange(grid, "h w xy -> 1 (h w) xy"))
        warped = rearrange(warped, "b (h w) xy -> b h w xy", h=height)
        return F.grid_sample(frame, warped, padding_mode="reflection", align_corners=True)


def equivariance_losses(
    region_predictor_out_transformed: dict[str, torch.Tensor],
    region_predictor_out_original: dict[str, torch.Tensor],
    transform: RandomTPS,
) -> dict[str, torch.Tensor]:
    """MRAA's equivariance terms, unweighted (the caller applies the loss weights).

    Both dicts hold ``shift`` (B, K, 2) and ``affine`` (B, K, 2, 2): "original" from the driving frame,
    "transformed" from ``transform.transform_frame(driving)``. Since the transformed frame samples the
    original at warp(c), a region at c in the transformed frame sits at warp(c) in the original one, with its
    affine mapped by the warp's Jacobian there.

    Returns {"equivariance_shift": mean |shift - warp(shift_t)|,
             "equivariance_affine": mean |I - affine^-1 J(shift_t) affine_t|}.
    """
    shift_t = region_predictor_out_transformed["shift"]
    affine_t = region_predictor_out_transformed["affine"]
    shift = region_predictor_out_original["shift"]
    affine = region_predictor_out_original["affine"]
    shift_loss = (shift - transform.warp_coordinates(shift_t)).abs().mean()
    affine_in_original = transform.jacobian(shift_t) @ affine_t
    normed = torch.linalg.inv(affine) @ affine_in_original
    eye = torch.eye(2, device=normed.device, dtype=normed.dtype)
    affine_loss = (eye - normed).abs().mean()
    return {"equivariance_shift": shift_loss, "equivariance_affine": affine_loss}
