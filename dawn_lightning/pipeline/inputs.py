"""User-given inputs of a generation besides the portrait and the speech: pose and blink tracks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dawn_lightning.models.audio_to_motion.motion_diffusion import BLINK_DIM, POSE_DIM


def load_pose_blink(source: str | os.PathLike | np.ndarray | Mapping) -> tuple[np.ndarray, np.ndarray]:
    """User-given pose (T, 6) and blink (T, 2), in the training store's units, from an .npy of states
    (T, 8) (pose then blink), an .npz with arrays ``pose`` and ``blink``, an array (T, 8) or a mapping."""
    name = str(source) if isinstance(source, str | os.PathLike) else "the pose/blink array"
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such pose/blink file")
        try:
            loaded = np.load(path, allow_pickle=False)
        except Exception as error:
            raise ValueError(f"{path}: cannot read pose/blink ({error})") from None
        source = dict(loaded) if isinstance(loaded, np.lib.npyio.NpzFile) else loaded
    if isinstance(source, Mapping):
        missing = {"pose", "blink"} - set(source)
        if missing:
            raise ValueError(f"{name}: needs arrays 'pose' (T, 6) and 'blink' (T, 2), has {sorted(source)}")
        pose, blink = np.asarray(source["pose"]), np.asarray(source["blink"])
    else:
        states = np.asarray(source)
        if states.ndim != 2 or states.shape[1] != POSE_DIM + BLINK_DIM:
            raise ValueError(f"{name}: expected states (T, 8) (pose 6, blink 2), got {states.shape}")
        pose, blink = states[:, :POSE_DIM], states[:, POSE_DIM:]
    if pose.ndim != 2 or pose.shape[1] != POSE_DIM or blink.ndim != 2 or blink.shape[1] != BLINK_DIM:
        raise ValueError(f"{name}: pose must be (T, 6) and blink (T, 2), got {pose.shape} and {blink.shape}")
    if len(pose) != len(blink):
        raise ValueError(f"{name}: {len(pose)} pose frames but {len(blink)} blink frames")
    pose, blink = pose.astype(np.float32), blink.astype(np.float32)
    if not (np.isfinite(pose).all() and np.isfinite(blink).all()):
        raise ValueError(f"{name}: pose/blink has non-finite values")
    return pose, blink
