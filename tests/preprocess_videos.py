"""Helpers of the preprocessing tests: small videos written with PyAV, a stub face backend, settings."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dawn_lightning.benchmarks.preprocess import default_crop
from dawn_lightning.data.audio_features import LogMelFeatures
from dawn_lightning.data.preprocess.face import FrameFace
from dawn_lightning.data.preprocess.run import Settings

REAL = Path(os.environ.get("DAWN_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))
FACE_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "face_landmarker.task"


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: Fraction,
    audio: np.ndarray | None = None,
    sample_rate: int = 44_100,
) -> Path:
    """Encode uint8 frames (T, H, W, 3) at ``fps`` (H.264, near-lossless), with stereo AAC ``audio`` (N,)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "4", "bf": "0"}
        sound = container.add_stream("aac", rate=sample_rate, layout="stereo") if audio is not None else None
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode())
        if sound is not None:
            stereo = np.repeat(np.asarray(audio, np.float32)[None], 2, axis=0)
            for start in range(0, stereo.shape[1], 1024):
                piece = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(stereo[:, start : start + 1024]), format="fltp", layout="stereo"
                )
                piece.sample_rate, piece.pts, piece.time_base = sample_rate, start, Fraction(1, sample_rate)
                container.mux(sound.encode(piece))
            container.mux(sound.encode())
    return path


def numbered_video(path: Path, fps: Fraction, seconds: float, size: int = 64, audio: bool = True) -> Path:
    """Source frame i is a flat grey of level 4 i (i < 64) (so a decoded frame tells its source index)."""
    count = int(round(seconds * fps))
    levels = (4 * np.arange(count)) % 256
    frames = np.broadcast_to(levels[:, None, None, None], (count, size, size, 3)).astype(np.uint8)
    sound = 0.1 * np.sin(np.arange(int(seconds * 44_100)) * 0.05) if audio else None
    return write_video(path, frames, fps, sound)


class BoxFace:
    """A stub backend: a 'face' in the middle of every frame whose mean is above ``threshold``."""

    num_landmarks = 4

    def __init__(self, threshold: float = 20.0):
        self.threshold = threshold

    def reset(self) -> None:
        pass

    def analyze(self, frame: np.ndarray, timestamp_ms: int) -> FrameFace | None:
        if frame.mean() < self.threshold:
            return None
        h, w = frame.shape[:2]
        box = np.array([w * 0.3, h * 0.3, w * 0.7, h * 0.7], np.float32)
        corners = box[[0, 1, 2, 1, 2, 3, 0, 3]].reshape(4, 2)
        mouth = np.array([w * 0.4, h * 0.55, w * 0.6, h * 0.65], np.float32)
        pose = np.array([0, 0, 0, 0.4, 0.5, 0.5], np.float32)
        return FrameFace(box, corners, pose, np.eye(3, dtype=np.float32), np.ones(2, np.float32), mouth)


def settings(size: int = 32, backend: str = "mediapipe") -> Settings:
    face = {"backend": backend, "model_path": str(FACE_MODEL), "min_confidence": 0.5}
    return Settings(size=size, face=face, crop=default_crop(), chunk_frames=32, keep_mb=256)


def store_config(settings: Settings, features=None, layout: str = "generic") -> dict:
    features = features or LogMelFeatures(n_mels=8)
    return {
        "kind": "preprocess",
        "layout": layout,
        "extensions": ["mp4", "mov", "mkv", "avi", "mpg"],
        "size": settings.size,
        "face": {k: v for k, v in settings.face.items() if k != "model_path"},
        "crop": settings.crop,
        "split": {"seed": 0, "val": 0.34, "test": 0.0, "val_list": None, "test_list": None},  # a val speaker
        "audio_features": features.spec,
    }


def have_mediapipe() -> bool:
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return False
    return FACE_MODEL.is_file()


def talking_video(
    path: Path, seconds: float = 2.0, fps: Fraction = Fraction(25), audio: bool = True, brightness: int = 128
) -> Path:
    """A textured, slowly changing video (mean ``brightness``) with a tone: what BoxFace sees as a face."""
    count = int(round(seconds * fps))
    y, x = np.mgrid[:64, :64]
    t = np.arange(count)[:, None, None]
    grey = brightness + 20 * np.sin((x + t) / 5.0) * np.cos(y / 7.0)
    frames = np.repeat(grey[..., None], 3, axis=-1).clip(0, 255).astype(np.uint8)
    sound = 0.1 * np.sin(np.arange(int(seconds * 44_100)) * 0.05) if audio else None
    return write_video(path, frames, fps, sound)
