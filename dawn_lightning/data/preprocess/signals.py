"""The per-frame arrays of one clip in crop coordinates: the store's signals (pose, blink, face and mouth
boxes) plus the landmarks, from the face track of its source video.

In crop coordinates (0, 0) is the crop's top-left corner and (1, 1) its bottom-right. Pose is
[yaw, pitch, roll (degrees), scale, tx, ty] with scale = face box width / crop side and (tx, ty) the face
box centre; it is smoothed over time (Savitzky-Golay), blink is left as measured so blinks keep their depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter

from dawn_lightning.data.preprocess.crop import ClipPlan
from dawn_lightning.data.preprocess.face import FrameFace


@dataclass
class FaceTrack:
    """The face analysis of every output frame of one video (NaN where no face was found)."""

    box: np.ndarray  # (T, 4) pixels
    mouth_box: np.ndarray  # (T, 4) pixels
    landmarks: np.ndarray  # (T, N, 2) pixels
    pose: np.ndarray  # (T, 6) see face.FrameFace
    eyes: np.ndarray  # (T, 2)

    @classmethod
    def from_faces(cls, faces: list[FrameFace | None], num_landmarks: int) -> FaceTrack:
        count = len(faces)
        track = cls(
            *(
                np.full(shape, np.nan, np.float32)
                for shape in ((count, 4), (count, 4), (count, num_landmarks, 2), (count, 6), (count, 2))
            )
        )
        for t, face in enumerate(faces):
            if face is not None:
                track.box[t], track.mouth_box[t], track.landmarks[t] = (
                    face.box,
                    face.mouth_box,
                    face.landmarks,
                )
                track.pose[t], track.eyes[t] = face.pose, face.eyes
        return track


def clip_signals(track: FaceTrack, plan: ClipPlan, smooth_frames: int = 9) -> dict[str, np.ndarray]:
    """pose (T, 6), blink (T, 2), face_box (T, 4), mouth_box (T, 4) and landmarks (T, 2N) of the clip."""
    span = slice(plan.start, plan.stop)
    x0, y0, side = plan.crop
    offset = np.array([x0, y0, x0, y0], np.float32)
    face_box = (track.box[span] - offset) / side
    centre = (face_box[:, :2] + face_box[:, 2:]) / 2
    pose = np.concatenate([track.pose[span, :3], face_box[:, 2:3] - face_box[:, 0:1], centre], axis=1)
    return {
        "pose": smooth(pose, smooth_frames),
        "blink": track.eyes[span],
        "face_box": face_box,
        "mouth_box": (track.mouth_box[span] - offset) / side,
        "landmarks": ((track.landmarks[span] - offset[:2]) / side).reshape(plan.num_frames, -1),
    }


def smooth(values: np.ndarray, frames: int) -> np.ndarray:
    """Savitzky-Golay (quadratic) smoothing of (T, D) along time over ``frames`` (odd; fewer for short T)."""
    window = min(frames, len(values) - (len(values) % 2 == 0))
    if window < 5:
        return values.astype(np.float32)
    return savgol_filter(values, window, 2, axis=0).astype(np.float32)
