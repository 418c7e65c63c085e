"""Decoding for preprocessing: 25 fps by timestamp from any rate, audio aligned with the frames."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from dawn_lightning.data.preprocess.decode import (
    NoAudioError,
    VideoDecodeError,
    open_video,
    resample_indices,
)
from tests.preprocess_videos import numbered_video, write_video


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(25), Fraction(30), Fraction(30000, 1001)])
def test_frames_are_resampled_to_25_fps_by_timestamp(tmp_path, fps):
    seconds = 2.0
    source = open_video(numbered_video(tmp_path / "v.mp4", fps, seconds))
    count = int(round(seconds * fps))
    assert source.num_frames == int(np.floor(count / fps * 25 + 1e-6))
    times = np.arange(count) / float(fps)
    expected = np.array([np.argmin(np.abs(times - k / 25)) for k in range(source.num_frames)])
    frames = source.frames(0, source.num_frames)
    decoded = np.round(frames.mean(axis=(1, 2, 3)) / 4).astype(int)
    np.testing.assert_array_equal(decoded, expected)
    assert len(source.audio) == source.num_frames * 640


def test_resample_indices_nearest_frame_and_variable_rate():
    # frames at 0, 0.1, 0.13, 0.2 s (variable rate): the instants 0, 0.04, ... pick the nearest start
    times = np.array([0.0, 0.1, 0.13, 0.2])
    np.testing.assert_array_equal(resample_indices(times, 0.24), [0, 0, 1, 2, 2, 3])


def test_flash_and_click_land_on_the_same_frame(tmp_path):
    # 29.97 fps source with 44.1 kHz stereo audio; the flash is one source frame, shown at 2.002 s, which is
    # the source frame nearest to 25 fps frame 50 (2.0 s); the click starts when the flash is shown
    fps, seconds, event = Fraction(30000, 1001), 3.0, 2.0
    count = int(round(seconds * fps))
    frames = np.full((count, 64, 64, 3), 40, np.uint8)
    flash = int(round(event * float(fps)))
    frames[flash] = 250
    audio = np.zeros(int(seconds * 44_100), np.float32)
    click = int(round(flash / float(fps) * 44_100))
    audio[click : click + 200] = 0.9
    source = open_video(write_video(tmp_path / "flash.mp4", frames, fps, audio))
    bright = int(np.argmax(source.frames(0, source.num_frames).mean(axis=(1, 2, 3))))
    loud = int(np.argmax(np.abs(source.audio))) // 640
    assert bright == loud == 50


def test_video_without_audio_and_truncated_video_raise_clear_errors(tmp_path):
    silent = numbered_video(tmp_path / "silent.mp4", Fraction(25), 1.0, audio=False)
    with pytest.raises(NoAudioError, match="silent.mp4: no audio stream"):
        open_video(silent)
    whole = numbered_video(tmp_path / "whole.mp4", Fraction(25), 2.0).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        open_video(cut)
