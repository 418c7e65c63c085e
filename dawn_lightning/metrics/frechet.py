"""The Frechet distance between two Gaussians fitted to feature sets, as a DDP-safe torchmetrics Metric.

    d^2 = |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))

in float64, with unbiased covariances (divide by n - 1) and scipy's ``sqrtm`` (pytorch-fid's
``calculate_frechet_distance``, including its small diagonal offset when the product is singular). The
states are sums (features, outer products, counts), reduced by "sum" across processes, so no feature is
gathered and uneven shards add up exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from torch import nn
from torchmetrics import Metric


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2), all float64."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class FrechetFeatureDistance(Metric):
    """Frechet distance between the features of real and generated samples.

    feature_net: a module mapping a batch of samples to features (N, dim); it is frozen and kept in eval
        mode. ``compute()`` needs two samples per side.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, feature_net: nn.Module, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.feature_net = feature_net.eval().requires_grad_(False)
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(
                f"{side}_cov_sum", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(f"{side}_n", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True):  # the feature network stays in eval mode
        super().train(mode)
        self.feature_net.eval()
        return self

    @torch.no_grad()
    def features(self, samples: torch.Tensor) -> torch.Tensor:
        return self.feature_net(samples).flatten(1).double()

    def update(self, samples: torch.Tensor, real: bool, features: bool = False) -> None:
        """Adds a batch to one side: samples for the feature network, or (``features``) their features
        (N, dim) computed already (one network pass serving several distances)."""
        if not len(samples):
            return
        features = (samples if features else self.features(samples)).double()
        side = "real" if real else "fake"
        getattr(self, f"{side}_sum").add_(features.sum(0))
        getattr(self, f"{side}_cov_sum").add_(features.T @ features)
        getattr(self, f"{side}_n").add_(len(features))

    def statistics(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean (dim,) and unbiased covariance (dim, dim) of one side's features."""
        n = int(getattr(self, f"{side}_n"))
        if n < 2:
            raise ValueError(f"{type(self).__name__}: {n} {side} sample(s); the distance needs at least 2")
        total = getattr(self, f"{side}_sum").cpu().numpy()
        mean = total / n
        cov = (getattr(self, f"{side}_cov_sum").cpu().numpy() - n * np.outer(mean, mean)) / (n - 1)
        return mean, cov

    def compute(self) -> torch.Tensor:
        distance = frechet_distance(*self.statistics("real"), *self.statistics("fake"))
        return torch.tensor(distance, dtype=torch.float64)
