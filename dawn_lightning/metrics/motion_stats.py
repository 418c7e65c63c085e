"""Statistics of generated head motion and blinks, compared with ground truth in stage-2 validation.

All take per-frame tracks at 25 fps as tensors (T, K) or (B, T, K) with an optional mask (B, T).
"""

from __future__ import annotations

import torch

from dawn_lightning import FPS


def blink_onsets(openness: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Frames (T,) bool where a blink starts: the mean eye openness (T, 2) drops below ``threshold`` of its
    median (the open level) after being above it. Eyes already closed at frame 0 start no blink here."""
    level = openness.mean(-1)
    closed = level < threshold * level.median()
    return closed & ~torch.cat([closed[:1], closed[:-1]])


def blink_rate(openness: torch.Tensor, threshold: float = 0.5) -> float:
    """Blinks per second of one track (T, 2)."""
    return float(blink_onsets(openness, threshold).sum()) * FPS / max(1, len(openness))


def high_pass(track: torch.Tensor, frames: int = FPS) -> torch.Tensor:
    """A track (T,) minus its centred moving average over ``frames`` frames (edges repeated): the fast part
    of a motion (nods, ~0.3 s) without its slow drift."""
    half = frames // 2
    padded = torch.cat([track[:1].expand(half), track, track[-1:].expand(frames - 1 - half)])
    return track - padded.unfold(0, frames, 1).mean(-1)


def onset_frames_from_logmel(features: torch.Tensor, min_gap: int = 3) -> torch.Tensor:
    """Audio onsets (indices) of a log-mel track (T, D): peaks of the positive spectral flux above its mean
    plus one standard deviation, at least ``min_gap`` frames apart."""
    flux = torch.relu(features[1:] - features[:-1]).sum(-1)
    flux = torch.cat([flux.new_zeros(1), flux])
    threshold = flux.mean() + flux.std()
    peaks = (flux > threshold) & (flux >= torch.roll(flux, 1)) & (flux >= torch.roll(flux, -1))
    onsets, last = [], -min_gap
    for index in torch.nonzero(peaks).flatten().tolist():
        if index - last >= min_gap:
            onsets.append(index)
            last = index
    return torch.tensor(onsets, dtype=torch.long)


def motion_beats(track: torch.Tensor) -> torch.Tensor:
    """Kinematic beats (indices) of a motion track (T, K): local minima of its speed."""
    speed = (track[1:] - track[:-1]).norm(dim=-1)
    inner = (speed[1:-1] < speed[:-2]) & (speed[1:-1] <= speed[2:])
    return torch.nonzero(inner).flatten() + 2


def beat_align_score(onsets: torch.Tensor, beats: torch.Tensor, sigma: float = 3.0) -> float:
    """Mean over audio onsets of exp(-d^2 / 2 sigma^2), d = frames to the nearest motion beat (the beat-align
    score of Li et al. 2021, AI Choreographer / Bailando, here with audio onsets as the music beats)."""
    if len(onsets) == 0 or len(beats) == 0:
        return 0.0
    distance = (onsets[:, None] - beats[None, :]).abs().min(dim=1).values.float()
    return float(torch.exp(-(distance**2) / (2 * sigma**2)).mean())
