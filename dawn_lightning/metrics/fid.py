"""FID on frames: pytorch-fid's InceptionV3 (pool3, 2048-d) with the FID Inception weights from a local file,
or the labelled random-feature network when no weights are configured."""

from __future__ import annotations

from unittest import mock

import torch
from torch import nn

from dawn_lightning.metrics.frechet import FrechetFeatureDistance
from dawn_lightning.metrics.random_features import LABEL, RandomImageFeatures
from dawn_lightning.metrics.weights import WeightsFormatError, load_state_dict

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}"


class InceptionFeatures(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> pool3 features (N, 2048): pytorch-fid's network and preprocessing
    (bilinear resize to 299 px without antialias, scaling to [-1, 1])."""

    dim = 2048

    def __init__(self, weights: str, setting: str = "metrics.fid.weights"):
        super().__init__()
        from pytorch_fid import inception

        state = load_state_dict(weights, setting, f"pytorch-fid's FID Inception weights, {INCEPTION_URL}")
        # pytorch-fid fetches its weights by URL; hand it the local file's state dict instead
        with mock.patch.object(inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
            try:
                self.net = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
            except RuntimeError as error:
                raise WeightsFormatError(
                    f"{setting}: {weights} does not fit pytorch-fid's InceptionV3: "
                    f"{str(error).splitlines()[1].strip()}"
                ) from None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float())[0].flatten(1)


def image_features(weights: str | None, random_dim: int = 64, random_size: int = 64) -> tuple[nn.Module, str]:
    """The FID feature network and the label of its numbers."""
    if weights is None:
        return RandomImageFeatures(random_dim, random_size), f"FID ({LABEL})"
    return InceptionFeatures(weights), "FID (pytorch-fid Inception)"


class FID(FrechetFeatureDistance):
    """FID between real and generated frames: ``update(frames (N, 3, H, W) in [0, 1], real)``."""

    def __init__(self, feature_net: nn.Module, batch_size: int = 64, **kwargs):
        dim = getattr(feature_net, "dim", None)
        if dim is None:
            raise ValueError("the FID feature network needs a `dim` attribute (its feature width)")
        super().__init__(feature_net, dim, **kwargs)
        self.batch_size = batch_size

    def update(self, samples: torch.Tensor, real: bool, features: bool = False) -> None:
        if features:
            return super().update(samples, real, features=True)
        for start in range(0, len(samples), self.batch_size):
            super().update(samples[start : start + self.batch_size], real)
