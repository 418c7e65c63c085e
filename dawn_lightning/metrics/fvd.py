"""FVD16 / FVD32: Frechet distance of I3D features of fixed-length clips (the StyleGAN-V TorchScript I3D,
400-d logits; inputs in [-1, 1] at 224 px), or of the labelled random-feature video network.

Clips are consecutive, non-overlapping windows of ``clip_length`` frames from every video (a video shorter
than one clip adds nothing); real and generated videos are cut the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dawn_lightning.metrics.frechet import FrechetFeatureDistance
from dawn_lightning.metrics.random_features import LABEL, RandomVideoFeatures
from dawn_lightning.metrics.weights import load_torchscript

I3D_FILE = "i3d_torchscript.pt"
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"


class I3DFeatures(nn.Module):
    """Clips (B, 3, T, 224, 224) in [-1, 1] -> (B, 400): StyleGAN-V's TorchScript I3D, called with
    ``rescale=False, resize=False, return_features=True``."""

    dim = 400

    def __init__(self, weights: str, setting: str = "metrics.fvd.weights"):
        super().__init__()
        self.net = load_torchscript(weights, setting, f"StyleGAN-V's I3D detector, {I3D_URL}")

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net(clips, rescale=False, resize=False, return_features=True)


def video_features(weights: str | None, random_dim: int = 32) -> tuple[nn.Module, int, str]:
    """The FVD feature network, the frame size it takes and the label of its numbers."""
    if weights is None:
        return RandomVideoFeatures(random_dim), 64, LABEL
    return I3DFeatures(weights), 224, "StyleGAN-V I3D"


def video_clips(video: torch.Tensor, clip_length: int) -> torch.Tensor:
    """A video (3, T, H, W) -> its consecutive non-overlapping clips (N, 3, clip_length, H, W)."""
    count = video.shape[1] // clip_length
    return rearrange(video[:, : count * clip_length], "c (n t) h w -> n c t h w", t=clip_length)


class FVD(FrechetFeatureDistance):
    """FVD of ``clip_length``-frame clips: ``update(video (3, T, H, W) in [0, 1], real)``, a video a call."""

    def __init__(self, feature_net: nn.Module, clip_length: int, size: int, batch_size: int = 8, **kwargs):
        super().__init__(feature_net, feature_net.dim, **kwargs)
        self.clip_length, self.size, self.batch_size = clip_length, size, batch_size

    def update(self, video: torch.Tensor, real: bool) -> None:
        clips = video_clips(video, self.clip_length)
        for start in range(0, len(clips), self.batch_size):
            batch = clips[start : start + self.batch_size].float()
            frames = rearrange(batch, "n c t h w -> (n t) c h w")
            size = (self.size, self.size)
            if frames.shape[-2:] != size:  # the suite hands them over resized already
                frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
            batch = rearrange(frames * 2 - 1, "(n t) c h w -> n c t h w", t=self.clip_length)
            super().update(batch, real)
