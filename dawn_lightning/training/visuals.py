"""Image grids (and animated GIFs) of what a stage computes, for TensorBoard and for looking at results."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from tensorboard.compat.proto.summary_pb2 import Summary
from torchvision.utils import make_grid

from dawn_lightning import FPS

# distinct colours for up to 16 regions (RGB in [0, 1])
PALETTE = torch.tensor(
    [
        [0.90, 0.10, 0.10],
        [0.10, 0.60, 0.90],
        [0.10, 0.80, 0.20],
        [0.95, 0.75, 0.10],
        [0.60, 0.20, 0.80],
        [0.95, 0.45, 0.10],
        [0.10, 0.85, 0.80],
        [0.90, 0.30, 0.60],
        [0.55, 0.55, 0.10],
        [0.40, 0.40, 0.95],
        [0.60, 0.30, 0.10],
        [0.20, 0.45, 0.30],
        [0.85, 0.85, 0.85],
        [0.35, 0.10, 0.35],
        [0.10, 0.30, 0.55],
        [0.70, 0.95, 0.50],
    ]
)


def region_map(heatmap: torch.Tensor, size: int) -> torch.Tensor:
    """Heatmaps (B, K, h, w) -> colour image (B, 3, size, size): each region in its colour, by its weight."""
    weights = heatmap / heatmap.amax(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    colours = PALETTE[: heatmap.shape[1]].to(heatmap)
    image = torch.einsum("bkhw,kc->bchw", weights, colours).clamp(0, 1)
    return F.interpolate(image, size=(size, size), mode="nearest")


def motion_grid(source, driving, prediction, warped, occlusion, heatmap) -> torch.Tensor:
    """One row per sample: source | driving | prediction | warped source | occlusion | regions. (3, H, W)."""
    size = source.shape[-1]
    occlusion = F.interpolate(occlusion, size=(size, size), mode="bilinear", align_corners=False).expand(
        -1, 3, -1, -1
    )
    columns = [
        source,
        driving,
        prediction.clamp(0, 1),
        warped.clamp(0, 1),
        occlusion,
        region_map(heatmap, size),
    ]
    tiles = rearrange(torch.stack(columns, dim=1), "b n c h w -> (b n) c h w")
    return make_grid(tiles.detach().float().cpu(), nrow=len(columns), padding=2, pad_value=1.0)


def clip_grid(rows: list[torch.Tensor], max_frames: int = 10) -> torch.Tensor:
    """Clips side by side in time: ``rows`` of videos (B, 3, F, H, W) in [0, 1] -> (3, H', W') with, for each
    clip, one row per entry of ``rows`` and up to ``max_frames`` evenly spaced frames as columns."""
    frames = rows[0].shape[2]
    picks = torch.linspace(0, frames - 1, min(max_frames, frames)).round().long()
    stacked = torch.stack([r[:, :, picks] for r in rows], dim=1)  # (B, R, 3, N, H, W)
    tiles = rearrange(stacked, "b r c n h w -> (b r n) c h w")
    return make_grid(tiles.detach().float().clamp(0, 1).cpu(), nrow=len(picks), padding=2, pad_value=1.0)


def gif_bytes(frames: np.ndarray, fps: float = FPS) -> bytes:
    """Frames uint8 (F, H, W, 3) -> an animated GIF (each frame shown 1/fps s, looping forever), encoded by
    PIL (up to 256 colours per frame). GIF timing is in centiseconds: 25 fps is exactly 4 cs a frame."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (F, H, W, 3) with F >= 1, got {frames.dtype} {frames.shape}")
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
    )
    return buffer.getvalue()


def video_summary(tag: str, frames: np.ndarray, fps: float = FPS) -> Summary:
    """An image summary holding ``frames`` uint8 (F, H, W, 3) as an animated GIF, which TensorBoard's Images
    tab plays. ``SummaryWriter.add_video`` would need moviepy; write this one with
    ``writer._get_file_writer().add_summary(summary, step)`` instead."""
    height, width = np.asarray(frames).shape[1:3]
    image = Summary.Image(
        height=height, width=width, colorspace=3, encoded_image_string=gif_bytes(frames, fps)
    )
    return Summary(value=[Summary.Value(tag=tag, image=image)])
