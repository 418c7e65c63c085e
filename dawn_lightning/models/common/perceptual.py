"""Multi-scale perceptual reconstruction loss of FOMM/MRAA.

FOMM (Siarohin et al. 2019, "First Order Motion Model for Image Animation") and MRAA (Siarohin et al. 2021,
"Motion Representations for Articulated Animation") compare the prediction with the target through VGG19
features at every level of an image pyramid. VGG19's ImageNet weights cannot be downloaded here, so they
come from a local file (``model.vgg_weights``); without one, the loss falls back to multi-scale
L1 + (1 - SSIM), SSIM as in Wang et al. 2004 ("Image Quality Assessment: From Error Visibility to
Structural Similarity").
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dawn_lightning.models.common.blocks import AntiAliasDownsample

log = logging.getLogger(__name__)

VGG_WEIGHTS_HELP = (
    "Set model.vgg_weights to a local copy of torchvision's VGG19 ImageNet weights "
    "(vgg19-dcbb9e9d.pth, the file torchvision.models.VGG19_Weights.IMAGENET1K_V1 points to): fetch it on a "
    "machine with internet access and copy it to a local path, since nothing is downloaded here."
)
# Slices of torchvision's vgg19().features ending at relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1.
VGG_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


class Vgg19Features(nn.Module):
    """Frozen VGG19 returning the relu1_1 ... relu5_1 activations of an RGB image in [0, 1].

    (B, 3, H, W) -> 5 tensors (B, 64, H, W), (B, 128, H/2, W/2), (B, 256, H/4, W/4), (B, 512, H/8, W/8),
    (B, 512, H/16, W/16); H and W must be at least 16. The module stays frozen and in eval mode, whatever
    ``train()`` says.
    """

    def __init__(self, weights_path: str):
        super().__init__()
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"VGG19 weights not found at {path}. {VGG_WEIGHTS_HELP}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a state dict. {VGG_WEIGHTS_HELP}")
        features_state = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        # Built on the meta device: the random initialisation (mostly of the unused classifier) is skipped and
        # the loaded tensors are assigned in place of the empty ones.
        with torch.device("meta"):
            features = torchvision.models.vgg19(weights=None).features
        try:
            features.load_state_dict(features_state, assign=True)
        except RuntimeError as error:
            raise ValueError(f"{path} is not a torchvision VGG19 state dict: {error}") from error
        self.slices = nn.ModuleList(features[start:end] for start, end in VGG_SLICES)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Vgg19Features:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = (x - self.mean) / self.std
        features = []
        for block in self.slices:
            out = block(out)
            features.append(out)
        return features


@functools.cache
def _warn_fallback() -> None:
    log.warning(
        "model.vgg_weights is not set: the perceptual loss uses multi-scale L1 + SSIM instead of VGG19 "
        "features. %s",
        VGG_WEIGHTS_HELP,
    )


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2D Gaussian kernel, (1, 1, size, size)."""
    axis = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    gauss = torch.exp(-(axis**2) / (2 * sigma**2))
    kernel = gauss[:, None] * gauss[None, :]
    return (kernel / kernel.sum()).view(1, 1, size, size)


def ssim(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Mean structural similarity of two (B, C, H, W) images in [0, 1] (Wang et al. 2004).

    ``window`` is a (1, 1, k, k) Gaussian; local statistics use zero padding, so any image size works.
    """
    channels = x.shape[1]
    window = window.expand(channels, 1, -1, -1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, window, padding=window.shape[-1] // 2, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (numerator / denominator).mean()


class PyramidPerceptualLoss(nn.Module):
    """MRAA's perceptual loss over an anti-aliased image pyramid.

    forward(prediction (B, 3, H, W), target (B, 3, H, W), both RGB in [0, 1]) -> {"perceptual": scalar}.
    With ``vgg_weights``: sum over scales and the 5 VGG19 layers of weight * mean |f(prediction) - f(target)|
    (the smallest scale must leave images of at least 16 pixels). Without: sum over scales of
    weight * (mean |prediction - target| + 1 - SSIM). Target features carry no gradient.
    """

    def __init__(
        self,
        scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125),
        weight: float = 10.0,
        vgg_weights: str | None = None,
    ):
        super().__init__()
        self.weight = weight
        self.pyramid = nn.ModuleList(AntiAliasDownsample(3, scale) for scale in scales)
        self.vgg = Vgg19Features(vgg_weights) if vgg_weights else None
        if self.vgg is None:
            _warn_fallback()
        self.register_buffer("window", gaussian_window(), persistent=False)

    @property
    def uses_vgg(self) -> bool:
        return self.vgg is not None

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        total = prediction.new_zeros(())
        for downsample in self.pyramid:
            pred = downsample(prediction)
            real = downsample(target.detach())
            if self.vgg is None:
                total = total + self.weight * ((pred - real).abs().mean() + 1 - ssim(pred, real, self.window))
                continue
            with torch.no_grad():
                real_features = self.vgg(real)
            for pred_feature, real_feature in zip(self.vgg(pred), real_features, strict=True):
                total = total + self.weight * (pred_feature - real_feature).abs().mean()
        return {"perceptual": total}
