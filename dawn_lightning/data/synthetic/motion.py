"""Head-pose trajectories and eye blinks of a synthetic talking head, sampled at the video frame rate.

Pose convention, one row per frame: ``[yaw_deg, pitch_deg, roll_deg, scale, tx, ty]``.
``yaw`` > 0 turns the face towards the image right, ``pitch`` > 0 tilts it down (a nod), ``roll`` > 0
rotates it clockwise on screen; ``scale`` is the size relative to the rest size; ``tx``/``ty`` move the
face centre right/down, in units of the frame size (normalised image coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from dawn_lightning import FPS

YAW_LIMIT = 20.0
PITCH_LIMIT = 12.0
ROLL_LIMIT = 8.0
TRANSLATION_LIMIT = 0.06
SCALE_RANGE = (0.92, 1.08)
BLINK_DURATION = (0.10, 0.30)  # seconds
_BLINK_REFRACTORY = 0.4  # seconds between the starts of two blinks, at least


@dataclass(frozen=True)
class Blinks:
    """Eye openness per frame and the blink events that produced it."""

    eye_open: np.ndarray  # (T, 2) float32 in [0, 1], 1 = open; columns = image-left eye, image-right eye
    events: np.ndarray  # (K, 2) float64: start time (s) and duration (s) of each blink


def _drift(rng: np.random.Generator, t: np.ndarray, limit: float, freq: tuple[float, float]) -> np.ndarray:
    """(T,) smooth zero-mean random motion bounded by ``limit``: random sinusoids plus smoothed noise."""
    total = limit * rng.uniform(0.6, 1.0)
    parts = rng.dirichlet(np.ones(4)) * total
    out = np.zeros_like(t)
    for amp in parts[:3]:
        out += amp * np.sin(2.0 * np.pi * rng.uniform(*freq) * t + rng.uniform(0.0, 2.0 * np.pi))
    noise = gaussian_filter1d(rng.standard_normal(t.shape[0] + 40), sigma=0.4 * FPS, mode="nearest")[20:-20]
    return out + parts[3] * noise / (np.abs(noise).max() + 1e-9)


def head_pose(rng: np.random.Generator, num_frames: int, stress: np.ndarray, amplitude: float) -> np.ndarray:
    """(T, 6) float32 pose track; ``stress`` (T,) places small nods at stressed syllable onsets.

    ``amplitude`` in [0.5, 1] scales the slow drift of all six components.
    """
    t = np.arange(num_frames) / FPS
    yaw = _drift(rng, t, 0.9 * YAW_LIMIT * amplitude, (0.05, 0.35))
    pitch = _drift(rng, t, 0.55 * PITCH_LIMIT * amplitude, (0.05, 0.35))
    roll = _drift(rng, t, 0.85 * ROLL_LIMIT * amplitude, (0.03, 0.25))

    nods = np.zeros(num_frames)
    for onset in np.flatnonzero(stress > 0):
        duration = rng.uniform(0.2, 0.4)
        lag = (t - t[onset]) / duration
        inside = (lag >= 0.0) & (lag <= 1.0)
        nods[inside] += rng.uniform(1.5, 3.0) * stress[onset] * np.sin(np.pi * lag[inside]) ** 2
    pitch = pitch + nods

    scale = 1.0 + _drift(rng, t, 0.06 * amplitude, (0.02, 0.12))
    tx = 0.4 * TRANSLATION_LIMIT * yaw / YAW_LIMIT + _drift(rng, t, 0.5 * TRANSLATION_LIMIT, (0.02, 0.15))
    ty = 0.002 * nods + _drift(rng, t, 0.4 * TRANSLATION_LIMIT, (0.02, 0.15))

    pose = np.stack(
        [
            np.clip(yaw, -YAW_LIMIT, YAW_LIMIT),
            np.clip(pitch, -PITCH_LIMIT, PITCH_LIMIT),
            np.clip(roll, -ROLL_LIMIT, ROLL_LIMIT),
            np.clip(scale, *SCALE_RANGE),
            np.clip(tx, -TRANSLATION_LIMIT, TRANSLATION_LIMIT),
            np.clip(ty, -TRANSLATION_LIMIT, TRANSLATION_LIMIT),
        ],
        axis=1,
    )
    return pose.astype(np.float32)


def _closure(x: np.ndarray) -> np.ndarray:
    """Lid closure in [0, 1] over a blink's normalised time x in [0, 1]: fast close, hold, slower open."""
    close = np.clip(x / 0.35, 0.0, 1.0)
    reopen = np.clip((1.0 - x) / 0.45, 0.0, 1.0)
    return np.minimum(close * close * (3.0 - 2.0 * close), reopen * reopen * (3.0 - 2.0 * reopen))


def sample_blinks(rng: np.random.Generator, num_frames: int, rate: float) -> Blinks:
    """Blinks as a renewal process with mean rate ``rate`` per second (0.2-1), each 100-300 ms long.

    Intervals are a 0.4 s refractory time plus an exponential wait, so the mean interval is ``1 / rate``.
    """
    duration = num_frames / FPS
    wait = max(1.0 / rate - _BLINK_REFRACTORY, 1e-3)
    events: list[tuple[float, float]] = []
    start = rng.exponential(wait)
    while start < duration:
        events.append((start, rng.uniform(*BLINK_DURATION)))
        start += _BLINK_REFRACTORY + rng.exponential(wait)

    t = np.arange(num_frames) / FPS
    closure = np.zeros((num_frames, 2))
    for begin, length in events:
        x = (t - begin) / length
        inside = (x > 0.0) & (x < 1.0)
        depth = 1.0 - rng.uniform(0.0, 0.06, size=2)  # a tiny left/right asymmetry
        closure[inside] = np.maximum(closure[inside], _closure(x[inside])[:, None] * depth)
    return Blinks(
        eye_open=(1.0 - closure).astype(np.float32),
        events=np.array(events, dtype=np.float64).reshape(-1, 2),
    )
