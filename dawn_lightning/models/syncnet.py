"""Lip-sync embedders: a 5-frame lip window and its 0.2 s of MFCC map to embeddings whose L2 distance is small
when they are in sync.

Both take lip windows (B, 3, 5, h, w) from ``prepare`` and MFCC windows (B, 1, 13, 20):
- `SyncNetV2`: the architecture of joonson/syncnet_python's ``SyncNetModel.S`` (same module names, so the
  public ``syncnet_v2.model`` state dict loads as is): whole frames resized to 224 px, BGR, 0-255.
- `CompactSyncNet`: the project's small SyncNet, trained contrastively on a clip store (``stages/syncnet``):
  a fixed mouth-region crop (a box in [0, 1] of the frame, saved with the weights) resized to ``crop_size``;
  unit-norm embeddings, so its distances lie in [0, 2] (its LSE values do not compare with syncnet_v2's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

WINDOW_FRAMES = 5
MFCC_PER_FRAME = 4
MFCC_WINDOW = WINDOW_FRAMES * MFCC_PER_FRAME


def crop_mouth(frames: torch.Tensor, box: list[float], size: int) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> the region ``box`` (x0, y0, x1, y1 in [0, 1]) of each, resized to
    (T, 3, size, size), in [-1, 1]."""
    _, h, w, _ = frames.shape
    x0, y0, x1, y1 = box
    left, top = int(x0 * w), int(y0 * h)
    right, bottom = max(left + 1, int(round(x1 * w))), max(top + 1, int(round(y1 * h)))
    x = rearrange(frames[:, top:bottom, left:right].float() / 127.5 - 1, "t h w c -> t c h w")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _conv_bn(conv: nn.Module, bn: nn.Module, pool: nn.Module | None = None) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=True), *([pool] if pool is not None else [])]


def _head(width: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, dim))


class SyncNetV2(nn.Module):
    """syncnet_python's ``S(num_layers_in_fc_layers=1024)``: 13.6 M parameters, 102 state-dict entries."""

    size = 224

    def __init__(self, dim: int = 1024):
        super().__init__()
        c2, c3, bn2, bn3 = nn.Conv2d, nn.Conv3d, nn.BatchNorm2d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(
            *_conv_bn(c2(1, 64, 3, 1, 1), bn2(64), nn.MaxPool2d(1, 1)),
            *_conv_bn(c2(64, 192, 3, 1, 1), bn2(192), nn.MaxPool2d(3, (1, 2))),
            *_conv_bn(c2(192, 384, 3, padding=1), bn2(384)),
            *_conv_bn(c2(384, 256, 3, padding=1), bn2(256)),
            *_conv_bn(c2(256, 256, 3, padding=1), bn2(256), nn.MaxPool2d(3, 2)),
            *_conv_bn(c2(256, 512, (5, 4)), bn2(512)),
        )
        self.netfcaud = _head(512, dim)
        self.netfclip = _head(512, dim)
        self.netcnnlip = nn.Sequential(
            *_conv_bn(c3(3, 96, (5, 7, 7), (1, 2, 2)), bn3(96), nn.MaxPool3d((1, 3, 3), (1, 2, 2))),
            *_conv_bn(
                c3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
                bn3(256),
                nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            ),
            *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), bn3(256)),
            *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), bn3(256)),
            *_conv_bn(
                c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), bn3(256), nn.MaxPool3d((1, 3, 3), (1, 2, 2))
            ),
            *_conv_bn(c3(256, 512, (1, 6, 6)), bn3(512)),
        )

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 RGB frames (T, H, W, 3) -> (3, T, 224, 224): BGR, bilinear resize, 0-255 floats."""
        x = rearrange(frames.flip(-1).float(), "t h w c -> t c h w")
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return rearrange(x, "t c h w -> c t h w")

    def forward_lip(self, lips: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(lips).flatten(1))

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))


class CompactSyncNet(nn.Module):
    """The project's SyncNet: mouth crops (B, 3, 5, crop_size, crop_size) in [-1, 1] and standardised MFCC
    windows -> embeddings (B, dim).

    crop_box: (x0, y0, x1, y1) in [0, 1] of the frame, the region ``prepare`` crops (the trainer sets it to
        the store's mouth boxes, grown to hold the mouth in every frame); saved with the weights.
    """

    def __init__(self, dim: int = 128, width: int = 32, crop_size: int = 32):
        super().__init__()
        self.config = {"dim": dim, "width": width, "crop_size": crop_size}
        self.crop_size = crop_size
        w = width
        self.lip = nn.Sequential(
            *_conv_bn(nn.Conv3d(3, w, (WINDOW_FRAMES, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(w)),
            *_conv_bn(nn.Conv3d(w, 2 * w, (1, 3, 3), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(2 * w)),
            *_conv_bn(nn.Conv3d(2 * w, 4 * w, (1, 3, 3), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(4 * w)),
            *_conv_bn(nn.Conv3d(4 * w, 4 * w, (1, 3, 3), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(4 * w)),
            nn.AdaptiveAvgPool3d(1),
        )
        self.audio = nn.Sequential(
            *_conv_bn(nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w)),
            *_conv_bn(nn.Conv2d(w, 2 * w, 3, (1, 2), 1), nn.BatchNorm2d(2 * w)),
            *_conv_bn(nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.BatchNorm2d(4 * w)),
            *_conv_bn(nn.Conv2d(4 * w, 4 * w, 3, 2, 1), nn.BatchNorm2d(4 * w)),
            nn.AdaptiveAvgPool2d(1),
        )
        self.lip_head, self.audio_head = _head(4 * w, dim), _head(4 * w, dim)
        self.register_buffer("crop_box", torch.tensor([0.0, 0.0, 1.0, 1.0]))
        self.register_buffer("mfcc_mean", torch.zeros(13))
        self.register_buffer("mfcc_std", torch.ones(13))

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 RGB frames (T, H, W, 3) -> (3, T, crop_size, crop_size)."""
        crops = crop_mouth(frames.to(self.crop_box.device), self.crop_box.tolist(), self.crop_size)
        return rearrange(crops, "t c h w -> c t h w")

    def forward_lip(self, lips: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.lip_head(self.lip(lips).flatten(1)), dim=1)

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        mfcc = (mfcc - self.mfcc_mean[:, None]) / self.mfcc_std[:, None]
        return F.normalize(self.audio_head(self.audio(mfcc).flatten(1)), dim=1)
