"""`smooth_over_time`: what the filter keeps and removes, and its use on sampled motion in the pipeline."""

import math

import numpy as np
import pytest
import torch

from dawn_lightning.diffusion import smooth_over_time
from dawn_lightning.pipeline import DawnPipeline
from tests.pipeline_fixtures import portrait, speech


def _wave(hz: float, frames: int = 200, fps: float = 25.0) -> torch.Tensor:
    return torch.cos(2 * math.pi * hz * torch.arange(frames) / fps).view(1, 1, frames, 1, 1)


def test_keeps_slow_motion_and_removes_frame_to_frame_flicker():
    inner = slice(20, 180)  # away from the repeated ends
    slow, flicker = _wave(1.0), _wave(12.5)  # 12.5 Hz at 25 fps alternates every frame
    kept = smooth_over_time(slow, 1.0)[..., inner, :, :].std() / slow[..., inner, :, :].std()
    left = smooth_over_time(flicker, 1.0)[..., inner, :, :].std() / flicker[..., inner, :, :].std()
    assert kept > 0.95
    assert left < 0.02
    mixed = smooth_over_time(slow + 0.3 * flicker, 1.0) - smooth_over_time(slow, 1.0)
    assert mixed[..., inner, :, :].abs().max() < 0.01


def test_constant_and_zero_sigma_are_unchanged_and_shape_is_kept():
    constant = torch.full((2, 3, 7, 4, 4), 0.37)
    assert torch.allclose(smooth_over_time(constant, 2.0), constant)
    x = torch.randn(2, 3, 9, 4, 5)
    assert smooth_over_time(x, 0.0) is x
    smoothed = smooth_over_time(x, 1.5)
    assert smoothed.shape == x.shape and not torch.allclose(smoothed, x)
    # time along another dim gives the same numbers as along dim 2
    assert torch.allclose(smooth_over_time(x.movedim(2, 0), 1.5, dim=0).movedim(0, 2), smoothed, atol=1e-6)


def test_negative_sigma_is_an_error():
    with pytest.raises(ValueError, match="sigma"):
        smooth_over_time(torch.zeros(1, 1, 4), -1.0)


def test_pipeline_smooths_the_sampled_motion_when_asked(checkpoints, one_thread):
    image, audio = portrait(), speech(1.2)[0]

    def frame_change(smoothing: float) -> float:
        pipeline = DawnPipeline.from_checkpoints(
            checkpoints["motion"],
            checkpoints["pose_blink"],
            checkpoints["diffusion"],
            sampler={"num_steps": 2, "temporal_smoothing": smoothing},
        )
        frames = pipeline(image, audio, seed=0).frames.astype(np.float32)
        return float(np.abs(np.diff(frames, axis=0)).mean())

    assert frame_change(2.0) < 0.7 * frame_change(0.0)
