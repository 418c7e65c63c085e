"""Batch collation for variable-length clips."""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

# Time axis of each per-frame entry of a stage-3 batch: video is (B, 3, F, H, W), the rest (B, F, D).
TIME_AXIS = {"video": 2, "audio": 1, "pose": 1, "blink": 1, "face_box": 1, "mouth_box": 1}


class RandomLengthCollate:
    """Collate, then crop every per-frame entry of the batch to one random length in [min_frames, max_frames].

    Curriculum B of DAWN trains on 30-40-frame clips with one length per batch. Drawing the length here (torch
    RNG, seeded per worker by the DataLoader) keeps the default samplers, so DDP sharding works unchanged.
    """

    def __init__(self, min_frames: int, max_frames: int):
        if not 1 <= min_frames <= max_frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
        self.min_frames, self.max_frames = min_frames, max_frames

    def __call__(self, samples: list[dict]) -> dict:
        batch = default_collate(samples)
        length = int(torch.randint(self.min_frames, self.max_frames + 1, ()))
        for key, axis in TIME_AXIS.items():
            if key in batch:
                batch[key] = batch[key].narrow(axis, 0, length)
        return batch
