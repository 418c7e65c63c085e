"""Inference: a portrait and a speech recording -> a talking-head video, with the three trained stages.

    pipeline = DawnPipeline.from_checkpoints("stage1.ckpt", "stage2.ckpt", "stage3.ckpt", device="cuda")
    video = pipeline("face.png", "speech.wav", seed=0)
    video.save("talk.mp4")

`dawn.py` holds the pipeline; the portrait's initial state, the stage-2 pose/blink pair, user-given pose and
blink, chunking and the device each have a module of their own.
"""

from dawn_lightning.pipeline.chunks import chunk_bounds
from dawn_lightning.pipeline.dawn import DawnPipeline
from dawn_lightning.pipeline.device import resolve_device
from dawn_lightning.pipeline.initial_state import (
    FaceInitialState,
    InitialStateEstimator,
    MeanInitialState,
    PortraitState,
    face_backend_from_config,
)
from dawn_lightning.pipeline.inputs import load_pose_blink
from dawn_lightning.pipeline.pose_blink_pair import PoseBlinkPair, load_pose_blink_pair
from dawn_lightning.pipeline.video import GeneratedVideo

__all__ = [
    "DawnPipeline",
    "FaceInitialState",
    "GeneratedVideo",
    "InitialStateEstimator",
    "MeanInitialState",
    "PortraitState",
    "PoseBlinkPair",
    "chunk_bounds",
    "face_backend_from_config",
    "load_pose_blink",
    "load_pose_blink_pair",
    "resolve_device",
]
