"""Weight-free measures of a talking-head video: a lip-sync proxy for faces whose open mouth is dark (the
synthetic data set, most real faces), how much the mouth moves, and how much the frames change.

Per frame, the mouth's darkness is 1 - the mean luma inside a fixed mouth box; the speech energy is the RMS
of the frame's 640 audio samples. Their Pearson correlation is high when the mouth opens with the speech and
near zero for a frozen or unrelated mouth. It is a sanity check, not LSE: use SyncNet scores for papers.
"""

from __future__ import annotations

import numpy as np

from dawn_lightning import SAMPLES_PER_FRAME


def mouth_darkness(frames: np.ndarray, box: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """frames (T, H, W, 3) uint8, box (4,) x0 y0 x1 y1 in [0, 1] (grown by ``margin`` of its size on each
    side) -> (T,) darkness in [0, 1]."""
    t, h, w, _ = frames.shape
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    left, right = int(np.floor(max(0.0, x0 - dx) * w)), int(np.ceil(min(1.0, x1 + dx) * w))
    top, bottom = int(np.floor(max(0.0, y0 - dy) * h)), int(np.ceil(min(1.0, y1 + dy) * h))
    if right <= left or bottom <= top:
        raise ValueError(f"mouth box {box} covers no pixel of a {w} x {h} frame")
    crop = frames[:, top:bottom, left:right].astype(np.float64) / 255
    luma = crop @ np.array([0.299, 0.587, 0.114])
    return 1 - luma.reshape(t, -1).mean(1)


def speech_energy(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """16 kHz mono audio (N,) -> (num_frames,) RMS per video frame (zero-padded at the end)."""
    needed = num_frames * SAMPLES_PER_FRAME
    audio = np.pad(np.asarray(audio, dtype=np.float64)[:needed], (0, max(0, needed - len(audio))))
    return np.sqrt((audio.reshape(num_frames, SAMPLES_PER_FRAME) ** 2).mean(1))


def mouth_audio_correlation(frames: np.ndarray, box: np.ndarray, audio: np.ndarray) -> float:
    """Pearson correlation of mouth darkness and speech energy over the frames; 0 when either is constant."""
    darkness = mouth_darkness(frames, box)
    energy = speech_energy(audio, len(frames))
    if darkness.std() < 1e-9 or energy.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(darkness, energy)[0, 1])


def mouth_motion(frames: np.ndarray, box: np.ndarray) -> float:
    """How much the mouth opens and closes: the std over frames of its darkness."""
    return float(mouth_darkness(frames, box).std())


def frame_change(frames: np.ndarray) -> float:
    """Mean absolute change between consecutive frames (T, H, W, 3) uint8, in 0-255 (0: a frozen video)."""
    return float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean()) if len(frames) > 1 else 0.0
