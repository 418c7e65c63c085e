"""Procedural synthetic talking heads: the project's embedded default data set (no external files)."""

from dawn_lightning.data.synthetic.clip import SyntheticClip, make_clip
from dawn_lightning.data.synthetic.face import RenderResult, render_frames
from dawn_lightning.data.synthetic.identity import Identity, sample_identity
from dawn_lightning.data.synthetic.motion import Blinks, head_pose, sample_blinks
from dawn_lightning.data.synthetic.speech import VOWELS, Speech, synthesize_speech

__all__ = [
    "VOWELS",
    "Blinks",
    "Identity",
    "RenderResult",
    "Speech",
    "SyntheticClip",
    "head_pose",
    "make_clip",
    "render_frames",
    "sample_blinks",
    "sample_identity",
    "synthesize_speech",
]
