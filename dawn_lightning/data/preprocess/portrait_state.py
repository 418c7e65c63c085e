"""The portrait's initial state for generation, measured by a face backend in the conventions preprocessing
writes into the clip store: the portrait square (after generation's own centre-crop or pad) is the clip's
crop, so its pixel coordinates divided by its side are crop coordinates.

face_box (4,) [x0, y0, x1, y1] in [0, 1]; pose (6,) [yaw, pitch, roll (degrees), scale, tx, ty] with scale the
face box width and (tx, ty) its centre; blink (2,) eye openness (left, right; 1 = open). They come from
`signals.clip_signals` on a one-frame track, so they cannot drift from what the stages were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dawn_lightning.data.preprocess.crop import ClipPlan
from dawn_lightning.data.preprocess.face import FaceBackend
from dawn_lightning.data.preprocess.signals import FaceTrack, clip_signals


class NoFaceError(ValueError):
    """The face backend found no face in the portrait."""


@dataclass(frozen=True)
class PortraitFace:
    face_box: np.ndarray  # (4,) float32, portrait-square coordinates in [0, 1]
    pose: np.ndarray  # (6,) float32
    blink: np.ndarray  # (2,) float32


def measure_portrait(backend: FaceBackend, image: np.ndarray) -> PortraitFace:
    """The face of a square portrait ``image`` (S, S, 3) uint8 RGB; NoFaceError when there is none. The
    backend's tracking state is reset before and after, so portraits never influence each other."""
    if image.ndim != 3 or image.shape[0] != image.shape[1] or image.shape[2] != 3:
        raise ValueError(f"expected a square RGB portrait (S, S, 3), got {image.shape}")
    backend.reset()
    try:
        face = backend.analyze(np.ascontiguousarray(image), 0)
    finally:
        backend.reset()
    if face is None:
        raise NoFaceError(f"no face found by the face backend ({type(backend).__name__})")
    track = FaceTrack.from_faces([face], backend.num_landmarks)
    signals = clip_signals(track, ClipPlan(0, 1, (0.0, 0.0, float(image.shape[0]))))
    return PortraitFace(*(signals[k][0].astype(np.float32) for k in ("face_box", "pose", "blink")))
