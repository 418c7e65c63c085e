"""Coordinate grids, 2x2 eigen-decompositions and region Gaussians for region-based motion (MRAA).

Coordinates are normalised to [-1, 1] with -1 and +1 on the first and last pixel centres; the last axis is
(x, y), x along the width.
"""

from __future__ import annotations

import torch


def coordinate_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h, w, 2) grid of (x, y) coordinates in [-1, 1]."""
    y = torch.linspace(-1, 1, height, device=device, dtype=dtype)
    x = torch.linspace(-1, 1, width, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def symmetric_eig2x2(matrix: torch.Tensor, eps: float = 1e-20) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form eigen-decomposition of symmetric 2x2 matrices (..., 2, 2), on their own device.

    Returns eigenvalues (..., 2) in descending order and eigenvectors U (..., 2, 2) as columns, so that
    matrix = U diag(values) U^T. U is the reflection [[c, s], [s, -c]] whose first column (c, s), the
    principal axis, points to x <= 0: the form the reference's CPU LAPACK SVD returns, with the sign fixed
    by a rule instead of by the algorithm's internals. The two agree on the sign for most matrices; where
    they differ, columns of U flip sign, which the relative affines' axis-swap correction absorbs when
    source and driving flip alike.
    """
    a, b, c = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 1, 1]
    x, y = a - c, 2 * b
    r2 = x * x + y * y
    distinct = r2 > eps
    radius = 0.5 * torch.sqrt(torch.where(distinct, r2, torch.ones_like(r2))) * distinct
    mean = 0.5 * (a + c)
    values = torch.stack([mean + radius, mean - radius], dim=-1)
    angle = 0.5 * torch.atan2(
        torch.where(distinct, y, torch.zeros_like(y)), torch.where(distinct, x, torch.ones_like(x))
    )
    cos, sin = -torch.cos(angle), -torch.sin(angle)
    vectors = torch.stack([torch.stack([cos, sin], -1), torch.stack([sin, -cos], -1)], dim=-2)
    return values, vectors


def covariance_sqrt(covar: torch.Tensor) -> torch.Tensor:
    """U diag(sqrt(eigenvalues)) of (..., 2, 2) covariances: the region's affine frame (MRAA's PCA)."""
    values, vectors = symmetric_eig2x2(covar)
    return vectors * values.clamp_min(1e-12).sqrt().unsqueeze(-2)


def region_gaussians(shift: torch.Tensor, covar: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """exp(-0.5 d^T covar^-1 d) around each region's shift: (B, K, 2), (B, K, 2, 2) -> (B, K, h, w)."""
    grid = coordinate_grid(height, width, shift.device, shift.dtype)
    diff = grid[None, None] - shift[:, :, None, None]
    inverse = torch.linalg.inv(covar)[:, :, None, None]
    under = torch.einsum("bkhwi,bkhwij,bkhwj->bkhw", diff, inverse, diff)
    return torch.exp(-0.5 * under)


def apply_homogeneous(transform: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Apply (B, 3, 3) projective transforms to (h, w, 2) coordinates -> (B, h, w, 2)."""
    ones = torch.ones_like(grid[..., :1])
    points = torch.cat([grid, ones], dim=-1)
    mapped = torch.einsum("bij,hwj->bhwi", transform, points)
    return mapped[..., :2] / mapped[..., 2:]
