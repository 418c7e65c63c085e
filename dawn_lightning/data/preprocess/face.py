"""Face analysis per frame behind a small interface, and its default backend: MediaPipe Face Landmarker.

A backend maps an RGB frame to a ``FrameFace`` (or None when there is no face): box, mouth box and landmarks
in pixels, head pose as [yaw, pitch, roll (degrees), scale, tx, ty] with the rotation matrix, and eye openness
(left, right; 1 = open, 0 = closed). ``scale`` is the face box width over the frame width and (tx, ty) the
face box centre, both normalised by the frame size. Roll > 0 is a clockwise tilt of the head on screen.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

MODEL_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
    "face_landmarker.task"
)
MODEL_ENV = "DAWN_FACE_MODEL"
# MediaPipe face-mesh indices of the lips (outer and inner contour): the mouth box.
LIP_INDICES = np.array(
    [
        61,
        146,
        91,
        181,
        84,
        17,
        314,
        405,
        321,
        375,
        291,
        185,
        40,
        39,
        37,
        0,
        267,
        269,
        270,
        409,
        78,
        95,
        88,
        178,
        87,
        14,
        317,
        402,
        318,
        324,
        308,
        191,
        80,
        81,
        82,
        13,
        312,
        311,
        310,
        415,
    ]
)
_FLIP_GL = np.diag([1.0, -1.0, -1.0])  # OpenGL camera (y up, looking down -z) -> image axes (y down)


@dataclass(frozen=True)
class FrameFace:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in pixels
    landmarks: np.ndarray  # (N, 2) x, y in pixels
    pose: np.ndarray  # (6,) yaw, pitch, roll (degrees), scale, tx, ty (normalised to the frame)
    rotation: np.ndarray  # (3, 3) head rotation in image axes (x right, y down, z into the scene)
    eyes: np.ndarray  # (2,) openness of the left and right eye, 1 = open
    mouth_box: np.ndarray  # (4,) x0, y0, x1, y1 of the lips in pixels


class FaceBackend(Protocol):
    num_landmarks: int

    def analyze(self, frame: np.ndarray, timestamp_ms: int) -> FrameFace | None:
        """The face in ``frame`` (H, W, 3) uint8 RGB, or None. ``timestamp_ms`` increases within a video."""

    def reset(self) -> None:
        """Start a new video (forget tracking state)."""


def resolve_model_path(model_path: str | os.PathLike | None) -> Path:
    """The Face Landmarker model file from the setting ``face.model_path``, else ``$DAWN_FACE_MODEL``."""
    chosen = model_path or os.environ.get(MODEL_ENV)
    if not chosen:
        raise FileNotFoundError(
            f"no face model: set face.model_path=/path/to/face_landmarker.task (or the env var {MODEL_ENV}); "
            f"download the MediaPipe Face Landmarker bundle from {MODEL_URL}"
        )
    path = Path(chosen).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: face model not found (setting face.model_path or env var {MODEL_ENV}); "
            f"download face_landmarker.task from {MODEL_URL}"
        )
    return path


def euler_degrees(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation in image axes, R = Rz(roll) Ry(yaw) Rx(pitch)."""
    yaw = np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0))
    pitch = np.arctan2(rotation[2, 1], rotation[2, 2])
    roll = np.arctan2(rotation[1, 0], rotation[0, 0])
    return tuple(float(np.degrees(a)) for a in (yaw, pitch, roll))


def ignore_profiler_ticks() -> None:
    """libmediapipe (1.2.2) carries Google's sampling CPU profiler: once loaded it arms a SIGPROF timer on the
    CPU clock of every new thread (every 10 ms), including threads that outlive its own handler. A process
    whose SIGPROF disposition is still the default then dies minutes later in unrelated code ("Profiling
    timer expired"; seen in the test suite, in pytest's main thread and in forked workers). Ignoring the
    signal is safe unless a SIGPROF profiler of the user's own is installed, which is left alone."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGPROF) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGPROF, signal.SIG_IGN)


QUIET_DETECTIONS = 2  # MediaPipe's inference threads log their start-up during the first detections


@contextmanager
def native_log_silenced(enabled: bool = True) -> Iterator[None]:
    """Inside the block, what native code writes to the process's stderr (file descriptor 2: MediaPipe's
    glog/TFLite start-up lines, which no setting turns off) goes to this module's debug log instead."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                log.debug("native: %s", line)


class MediaPipeFaceBackend:
    """MediaPipe Face Landmarker (Tasks API): 478 landmarks, the facial transformation matrix (pose) and the
    eyeBlinkLeft/Right blendshapes (openness = 1 - blink score). Runs in VIDEO mode: it tracks the face from
    frame to frame, so frames of one video must come in time order; ``reset`` between videos."""

    num_landmarks = 478

    def __init__(
        self, model_path: str | os.PathLike | None = None, min_confidence: float = 0.5, verbose: bool = False
    ):
        try:
            import mediapipe  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "the MediaPipe face backend needs the `face` extra: pip install -e '.[face]'"
            ) from error
        self.model_path = resolve_model_path(model_path)
        self.min_confidence, self.verbose = min_confidence, verbose
        self._landmarker = None
        self._last_ms = -1
        self._quiet_calls = 0  # detections still run with the native log silenced (its start-up lines)
        ignore_profiler_ticks()

    def reset(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
        self._landmarker, self._last_ms = None, -1

    def _open(self):
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=1,
            min_face_detection_confidence=self.min_confidence,
            min_face_presence_confidence=self.min_confidence,
            min_tracking_confidence=self.min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        with native_log_silenced(not self.verbose):
            landmarker = vision.FaceLandmarker.create_from_options(options)
        self._quiet_calls = QUIET_DETECTIONS
        return landmarker

    def analyze(self, frame: np.ndarray, timestamp_ms: int) -> FrameFace | None:
        import mediapipe as mp

        if self._landmarker is None:
            self._landmarker = self._open()
        timestamp_ms = max(int(timestamp_ms), self._last_ms + 1)  # VIDEO mode needs increasing times
        self._last_ms = timestamp_ms
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        with native_log_silenced(not self.verbose and self._quiet_calls > 0):
            result = self._landmarker.detect_for_video(image, timestamp_ms)
        self._quiet_calls = max(0, self._quiet_calls - 1)
        if not result.face_landmarks:
            return None
        height, width = frame.shape[:2]
        points = np.array([(p.x * width, p.y * height) for p in result.face_landmarks[0]], np.float32)
        box = np.concatenate([points.min(0), points.max(0)])
        matrix = np.asarray(result.facial_transformation_matrixes[0], np.float64)
        linear = matrix[:3, :3] / np.cbrt(np.linalg.det(matrix[:3, :3]))
        rotation = _FLIP_GL @ linear @ _FLIP_GL
        yaw, pitch, roll = euler_degrees(rotation)
        centre = (box[:2] + box[2:]) / 2
        pose = np.array(
            [yaw, pitch, roll, (box[2] - box[0]) / width, centre[0] / width, centre[1] / height], np.float32
        )
        scores = {c.category_name: c.score for c in result.face_blendshapes[0]}
        eyes = 1.0 - np.array([scores["eyeBlinkLeft"], scores["eyeBlinkRight"]], np.float32)
        lips = points[LIP_INDICES]
        mouth = np.concatenate([lips.min(0), lips.max(0)])
        return FrameFace(box, points, pose, rotation.astype(np.float32), eyes, mouth)


def make_backend(
    name: str, model_path: str | None = None, min_confidence: float = 0.5, verbose: bool = False
) -> FaceBackend:
    """The backend named by the setting ``face.backend``; ``verbose``: let its native start-up log through."""
    if name == "mediapipe":
        return MediaPipeFaceBackend(model_path, min_confidence, verbose)
    raise ValueError(f"face.backend must be 'mediapipe', got {name!r}")
