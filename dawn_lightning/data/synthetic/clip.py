"""One synthetic talking-head clip: speech, head motion, blinks and the rendered frames, with ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from dawn_lightning import FPS
from dawn_lightning.data.synthetic.face import render_frames
from dawn_lightning.data.synthetic.identity import Identity
from dawn_lightning.data.synthetic.motion import head_pose, sample_blinks
from dawn_lightning.data.synthetic.speech import synthesize_speech


@dataclass(frozen=True)
class SyntheticClip:
    """T video frames at 25 fps and T * 640 audio samples at 16 kHz, with per-frame ground truth.

    ``pose`` rows are ``[yaw_deg, pitch_deg, roll_deg, scale, tx, ty]`` (see ``motion``); boxes are
    ``(x0, y0, x1, y1)`` in normalised image coordinates ([0, 1], origin top-left).
    """

    frames: np.ndarray  # (T, S, S, 3) uint8 RGB
    audio: np.ndarray  # (T * 640,) float32 in [-1, 1]
    pose: np.ndarray  # (T, 6) float32
    blink: np.ndarray  # (T, 2) float32 eye openness in [0, 1], 1 = open (image-left, image-right eye)
    face_box: np.ndarray  # (T, 4) float32
    mouth_box: np.ndarray  # (T, 4) float32: outer lip contour
    mouth_open: np.ndarray  # (T,) float32 in [0, 1]


def make_clip(identity: Identity, seed: int, num_frames: int, size: int) -> SyntheticClip:
    """Generate one clip of ``num_frames`` frames at ``size`` x ``size`` pixels.

    Deterministic: the same (identity, seed, num_frames, size) gives bit-identical output. Speech, head
    motion and blinks draw from independent streams derived from ``seed`` and ``identity.key``.
    """
    speech_seq, pose_seq, blink_seq = np.random.SeedSequence([seed, identity.key]).spawn(3)
    speech = synthesize_speech(
        np.random.default_rng(speech_seq), num_frames, identity.f0, identity.speaking_rate
    )
    pose = head_pose(np.random.default_rng(pose_seq), num_frames, speech.stress, identity.head_motion)
    blinks = sample_blinks(np.random.default_rng(blink_seq), num_frames, identity.blink_rate)
    brow_raise = np.clip(
        gaussian_filter1d(speech.stress.astype(np.float64), sigma=0.12 * FPS) * 3.0, 0.0, 1.0
    )
    render = render_frames(
        identity, pose, speech.mouth_open, speech.vowel_weights, blinks.eye_open, size, brow_raise
    )
    return SyntheticClip(
        frames=render.frames,
        audio=speech.audio,
        pose=pose,
        blink=blinks.eye_open,
        face_box=render.face_box,
        mouth_box=render.mouth_box,
        mouth_open=speech.mouth_open,
    )
