"""The face crop that LSE-C / LSE-D are measured on, as syncnet_python's ``run_pipeline.py`` makes it.

Papers score lip sync on a 224 x 224 crop of the speaking face, not on the whole frame: every frame's face is
detected, the detections are linked into a track (a detection joins the track when its box overlaps the
track's last box with IoU > 0.5, allowing up to 25 frames without one), a track needs ``min_track`` frames
(100) and a mean box side over ``min_face_size`` (100 px), the missing frames' boxes are interpolated, the
box centre and half-size are median-filtered over 13 frames, and each frame is cropped around the box centre
(rows from centre - s to centre + s (1 + 2 crop_scale), columns centre +- s (1 + crop_scale), crop_scale 0.4,
on the frame padded with grey 110) and resized to 224 px. The speech is cut to the track's frames.

What differs from syncnet_python: the detector is the project's face backend (MediaPipe landmarks' extent)
where syncnet_python runs S3FD (a box with more forehead and chin), scene cuts are not searched (one shot per
video is assumed), and the crop is not re-encoded through an XVID AVI and JPEG frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import medfilt

from dawn_lightning import SAMPLES_PER_FRAME

Box = Sequence[float]  # (x0, y0, x1, y1) in pixels
Detector = Callable[
    [np.ndarray, int], Box | None
]  # RGB frame (H, W, 3), its time in ms -> a face box or None
CROP_SIZE = 224
PAD_VALUE = 110


@dataclass(frozen=True)
class CropSettings:
    crop_scale: float = 0.4
    iou_threshold: float = 0.5
    max_missed: int = 25  # frames without a linked detection before a track ends
    min_track: int = 100  # frames
    min_face_size: float = 100.0  # pixels, the mean box side
    smooth_frames: int = 13  # median filter of the box centre and size


@dataclass(frozen=True)
class FaceTrack:
    frames: np.ndarray  # (N,) consecutive frame indices
    boxes: np.ndarray  # (N, 4) boxes, missing frames interpolated


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def track_faces(
    detections: Sequence[Sequence[Box]], settings: CropSettings = CropSettings()
) -> list[FaceTrack]:
    """Face tracks from per-frame detections (frame t -> its boxes), greedily: each track takes, frame by
    frame, the first detection that overlaps its last box enough, until it misses too many frames; tracks
    too short or too small are dropped."""
    left = [list(boxes) for boxes in detections]
    tracks = []
    while True:
        frames, boxes = [], []
        for t, candidates in enumerate(left):
            if frames and t - frames[-1] > settings.max_missed:
                break
            for box in candidates:
                if not frames or iou(box, boxes[-1]) > settings.iou_threshold:
                    frames.append(t)
                    boxes.append(np.asarray(box, np.float64))
                    candidates.remove(box)
                    break
        if not frames:
            return tracks
        if len(frames) <= settings.min_track:
            continue
        every = np.arange(frames[0], frames[-1] + 1)
        stacked = np.stack(boxes)
        filled = np.stack([np.interp(every, frames, stacked[:, k]) for k in range(4)], axis=1)
        side = max((filled[:, 2] - filled[:, 0]).mean(), (filled[:, 3] - filled[:, 1]).mean())
        if side > settings.min_face_size:
            tracks.append(FaceTrack(every, filled))


def crop_track(frames: np.ndarray, track: FaceTrack, settings: CropSettings = CropSettings()) -> np.ndarray:
    """uint8 frames (T, H, W, 3) -> the track's face crops (N, 224, 224, 3)."""
    boxes = track.boxes
    kernel = settings.smooth_frames
    half = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel)
    centre_y = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel)
    centre_x = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel)
    scale = settings.crop_scale
    crops = []
    for i, t in enumerate(track.frames):
        s = half[i]
        pad = int(s * (1 + 2 * scale))
        padded = np.pad(frames[t], ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        y, x = centre_y[i] + pad, centre_x[i] + pad
        face = padded[
            int(y - s) : int(y + s * (1 + 2 * scale)), int(x - s * (1 + scale)) : int(x + s * (1 + scale))
        ]
        crops.append(resize(face, CROP_SIZE))
    return np.stack(crops)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (h, w, 3) -> (size, size, 3), bilinear with half-pixel centres (as OpenCV's INTER_LINEAR)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def face_crop(
    frames: np.ndarray, audio: np.ndarray, detect: Detector, settings: CropSettings = CropSettings()
) -> tuple[np.ndarray, np.ndarray] | None:
    """The longest face track's 224-px crops (N, 224, 224, 3) and the speech of its frames, or None when no
    face is tracked long enough (``min_track`` frames of a face larger than ``min_face_size``)."""
    detections = [[] if box is None else [tuple(float(v) for v in box)] for box in detect(frames)]
    tracks = track_faces(detections, settings)
    if not tracks:
        return None
    track = max(tracks, key=lambda tr: len(tr.frames))
    start, stop = int(track.frames[0]), int(track.frames[-1]) + 1
    return crop_track(frames, track, settings), audio[start * SAMPLES_PER_FRAME : stop * SAMPLES_PER_FRAME]
