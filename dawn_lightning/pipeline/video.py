"""A generated talking-head video: frames, the audio they speak and the pose/blink that drove them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dawn_lightning import FPS, SAMPLE_RATE


@dataclass
class GeneratedVideo:
    """frames uint8 (T, H, W, 3) at ``fps``; audio float32 (T * 640,) at 16 kHz, cut or padded to the
    frames; the pose (T, 6) and blink (T, 2) that drove them, in the training store's units."""

    frames: np.ndarray
    audio: np.ndarray
    pose: np.ndarray
    blink: np.ndarray
    fps: int = FPS
    sample_rate: int = SAMPLE_RATE
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase of the generation

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps

    def save(self, path: str | os.PathLike, pixel_format: str = "yuv420p") -> Path:
        """Writes an H.264 mp4 with the audio as AAC (atomically; the folder is created)."""
        from dawn_lightning.data.video_io import write_mp4

        write_mp4(path, self.frames, self.fps, self.audio, self.sample_rate, pixel_format=pixel_format)
        return Path(path)
