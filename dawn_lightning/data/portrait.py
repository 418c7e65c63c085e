"""Loading the portrait of inference: an image file (PNG, JPEG, anything Pillow reads) or an array of any
size -> a square RGB frame of the model's size, float in [0, 1].

Transparency is flattened onto a white or black background, greyscale becomes RGB, EXIF orientation is
applied, and a non-square image is centre-cropped or padded (with the background colour) to a square before
the resize. Errors are `PortraitError` (a ValueError) or FileNotFoundError, and name the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

SquareMode = Literal["crop", "pad"]
BACKGROUNDS = {"white": 1.0, "black": 0.0}


class PortraitError(ValueError):
    """A portrait that cannot be read or used."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The image at ``path`` as float32 (H, W, C) in [0, 1], C = 1 (grey), 2 (grey + alpha), 3 or 4 (RGBA),
    upright according to its EXIF orientation."""
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
    except Exception as error:  # Pillow: UnidentifiedImageError, OSError for truncated data, ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PortraitError(f"{path}: cannot read the image ({reason})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / 32-bit greyscale
        array = np.asarray(image, dtype=np.float32)
        return (array / (65535.0 if array.max() > 255 else 255.0)).clip(0, 1)[..., None]
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = image.mode in ("PA", "La") or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[..., None] if array.ndim == 2 else array


def as_image_array(image: np.ndarray | torch.Tensor, name: str = "the portrait array") -> np.ndarray:
    """An array (H, W), (H, W, C) uint8 or float in [0, 1], or a tensor (C, H, W) float in [0, 1] (torch's
    layout) -> float32 (H, W, C) in [0, 1]."""
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.dim() == 3 and tensor.shape[0] in (1, 2, 3, 4) and tensor.shape[-1] not in (1, 2, 3, 4):
            tensor = tensor.permute(1, 2, 0)
        image = tensor.numpy()
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or min(array.shape[:2]) < 1:
        raise PortraitError(f"{name}: expected an image (H, W[, C]) with 1-4 channels, got {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise PortraitError(f"{name}: float pixels must lie in [0, 1]")
    return array


def to_rgb(image: np.ndarray, background: str = "white") -> np.ndarray:
    """(H, W, 1-4) -> (H, W, 3): alpha composited over the background, grey repeated."""
    if background not in BACKGROUNDS:
        raise ValueError(f"portrait background must be one of {sorted(BACKGROUNDS)}, got {background!r}")
    channels = image.shape[-1]
    if channels in (2, 4):
        colour, alpha = image[..., :-1], image[..., -1:]
        image = colour * alpha + BACKGROUNDS[background] * (1 - alpha)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def make_square(image: torch.Tensor, mode: SquareMode = "crop", fill: float = 1.0) -> torch.Tensor:
    """(C, H, W) -> (C, S, S): the centred square of side min(H, W) ("crop"), or the image centred on a
    square of side max(H, W) filled with ``fill`` ("pad")."""
    _, h, w = image.shape
    if mode == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return image[:, top : top + side, left : left + side]
    if mode == "pad":
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        return F.pad(image, (left, side - w - left, top, side - h - top), value=fill)
    raise ValueError(f"portrait mode must be 'crop' or 'pad', got {mode!r}")


def load_portrait(
    source: str | os.PathLike | np.ndarray | torch.Tensor,
    size: int,
    mode: SquareMode = "crop",
    background: str = "white",
) -> torch.Tensor:
    """The portrait as the model's input frame: float32 (3, size, size) in [0, 1].

    source: an image file, or an array / tensor as `as_image_array` takes.
    mode: "crop" (centre square) or "pad" (the whole image on a square of ``background``).
    background: "white" or "black", under transparent pixels and the padding.
    """
    if isinstance(source, str | os.PathLike):
        array = read_image(source)
    else:
        array = as_image_array(source)
    rgb = torch.from_numpy(np.ascontiguousarray(to_rgb(array, background))).permute(2, 0, 1)
    square = make_square(rgb, mode, BACKGROUNDS[background])
    if square.shape[-1] != size:
        square = F.interpolate(square[None], size=(size, size), mode="bicubic", antialias=True)[0]
    return square.clamp(0, 1).contiguous()
