"""Contact sheets: a grid of frames written as one PNG image, to look at data or generated frames."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_PAD = 2
_LABEL_HEIGHT = 12


def write_contact_sheet(
    frames: np.ndarray, path: str | os.PathLike, columns: int = 8, labels: list[str] | None = None
) -> Path:
    """Write ``frames`` (N, H, W, 3) uint8 RGB as a PNG grid of ``columns`` columns; returns the path.

    ``labels`` (N strings) are printed under the tiles. The file is written to a temporary name in the same
    folder and renamed, so readers never see a partial image.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames of shape (N, H, W, 3), got {frames.dtype} {frames.shape}")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    n, h, w, _ = frames.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    label_h = _LABEL_HEIGHT if labels is not None else 0
    tile_w, tile_h = w + _PAD, h + label_h + _PAD
    sheet = Image.new("RGB", (columns * tile_w + _PAD, rows * tile_h + _PAD), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, frame in enumerate(frames):
        x, y = _PAD + (i % columns) * tile_w, _PAD + (i // columns) * tile_h
        sheet.paste(Image.fromarray(frame), (x, y))
        if labels is not None:
            draw.text((x + 1, y + h), labels[i], fill=(230, 230, 230))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            sheet.save(f, format="PNG")
        os.chmod(tmp, 0o644)  # mkstemp creates the file private; a sheet is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
