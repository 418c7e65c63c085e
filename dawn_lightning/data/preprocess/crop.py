"""From a face track to clips: where to split (no face, scene cut, the face leaving the crop, a length cap)
and one stable square crop per clip; cropping and resizing frames to the store's size.

A crop is (x0, y0, side) in source pixels; it may reach outside the frame, where edge pixels are repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter1d


@dataclass(frozen=True)
class ClipPlan:
    start: int  # first output frame
    stop: int  # one past the last
    crop: tuple[float, float, float]  # x0, y0, side in source pixels

    @property
    def num_frames(self) -> int:
        return self.stop - self.start


def scene_cuts(thumbnails: np.ndarray, threshold: float) -> np.ndarray:
    """(T,) bool: True where frame t starts a new shot. ``thumbnails`` (T, h, w) are small grey frames in
    [0, 255]; a cut is a mean absolute change above ``threshold``."""
    change = np.abs(np.diff(thumbnails.astype(np.float32), axis=0)).mean(axis=(1, 2))
    return np.concatenate([[False], change > threshold])


def thumbnail(frames: np.ndarray, size: int = 32) -> np.ndarray:
    """(T, ~size, ~size) grey thumbnails of uint8 frames (T, H, W, 3), by striding (enough for cuts)."""
    step_y, step_x = max(1, frames.shape[1] // size), max(1, frames.shape[2] // size)
    return frames[:, ::step_y, ::step_x].mean(axis=-1, dtype=np.float32)


def plan_clips(
    boxes: np.ndarray,
    cuts: np.ndarray,
    margin: float,
    min_frames: int,
    max_frames: int,
    smooth_frames: int = 9,
    max_zoom: float = 1.3,
) -> tuple[list[ClipPlan], int]:
    """Clips over a face track, and the number of clips dropped for being shorter than ``min_frames``.

    ``boxes`` (T, 4) are face boxes in pixels, NaN where there is no face. Within a run of faces with no
    scene cut, a clip grows while the (smoothed) face boxes it has seen fit in one square of side
    (1 + 2 ``margin``) x their mean size, and the face size varies less than ``max_zoom``; the crop is that
    square, centred on them. A clip is cut at ``max_frames``.
    """
    found = np.isfinite(boxes).all(axis=1)
    plans, dropped = [], 0
    for start, stop in _runs(found & ~cuts, found):
        centre = uniform_filter1d((boxes[start:stop, :2] + boxes[start:stop, 2:]) / 2, smooth_frames, axis=0)
        size = uniform_filter1d((boxes[start:stop, 2:] - boxes[start:stop, :2]).max(axis=1), smooth_frames)
        low, high = centre - size[:, None] / 2, centre + size[:, None] / 2
        first = 0
        while first < stop - start:
            last = _grow(low, high, size, first, margin, max_zoom, max_frames)
            if last - first >= min_frames:
                lo, hi = low[first:last].min(0), high[first:last].max(0)
                side = (1 + 2 * margin) * size[first:last].mean()
                mid = (lo + hi) / 2
                plans.append(
                    ClipPlan(start + first, start + last, (mid[0] - side / 2, mid[1] - side / 2, side))
                )
            else:
                dropped += 1
            first = last
    return plans, dropped


def _runs(starts_ok: np.ndarray, found: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of frames with a face, split where ``starts_ok`` is False (a cut)."""
    runs, start = [], None
    for t, has_face in enumerate(found):
        if start is not None and (not has_face or not starts_ok[t]):
            runs.append((start, t))
            start = None
        if start is None and has_face:
            start = t
    if start is not None:
        runs.append((start, len(found)))
    return runs


def _grow(low, high, size, first, margin, max_zoom, max_frames) -> int:
    """One past the last frame of the clip that starts at ``first``."""
    lo, hi = low[first].copy(), high[first].copy()
    small = big = total = size[first]
    end = first + 1
    while end < len(size) and end - first < max_frames:
        lo2, hi2 = np.minimum(lo, low[end]), np.maximum(hi, high[end])
        small2, big2 = min(small, size[end]), max(big, size[end])
        side = (1 + 2 * margin) * (total + size[end]) / (end - first + 1)
        if (hi2 - lo2).max() > side or big2 > max_zoom * small2:
            break
        lo, hi, small, big, total = lo2, hi2, small2, big2, total + size[end]
        end += 1
    return end


def crop_resize(frames: np.ndarray, crop: tuple[float, float, float], size: int) -> np.ndarray:
    """uint8 (T, size, size, 3): the square ``crop`` of ``frames`` (T, H, W, 3), edge-padded where it leaves
    the frame, resized with PIL's bilinear filter (antialiased when shrinking)."""
    x0, y0, side = (int(round(v)) for v in crop)
    height, width = frames.shape[1:3]
    pads = (max(0, -y0), max(0, y0 + side - height), max(0, -x0), max(0, x0 + side - width))
    window = frames[:, max(0, y0) : y0 + side, max(0, x0) : x0 + side]
    if any(pads):
        window = np.pad(window, ((0, 0), pads[:2], pads[2:], (0, 0)), mode="edge")
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in window])
