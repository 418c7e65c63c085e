"""Audio cut to whole video frames (25 fps, 640 samples at 16 kHz a frame)."""

from __future__ import annotations

import numpy as np

from dawn_lightning import SAMPLES_PER_FRAME


def fit_length(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """Trim or zero-pad mono ``audio`` (N,) to exactly ``num_frames`` * 640 samples."""
    target = num_frames * SAMPLES_PER_FRAME
    if len(audio) >= target:
        return audio[:target]
    return np.pad(audio, (0, target - len(audio)))
