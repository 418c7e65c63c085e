"""Batch collation for variable-length clips."""

from __future__ import annotations

from torch.utils.data import default_collate

# Time axis of each per-frame entry of a stage-3 batch: video is (B, 3, F, H, W), the rest (B, F, D).
TIME_AXIS = {"video": 2, "audio": 1, "pose": 1, "blink": 1, "face_box": 1, "mouth_box": 1}


class BatchLengthCollate:
    """Collate, then crop every per-frame entry of the batch to the ``length`` its first sample drew.

    Curriculum B of DAWN trains on 30-40-frame clips with one length per batch. The dataset draws a length
    with every sample's randomness (`VideoClipDataset` with ``min_frames``), so the batch's length is a
    function of its samples' keys like everything else in it: the same under any number of ranks and workers,
    and after a resume.
    """

    def __call__(self, samples: list[dict]) -> dict:
        batch = default_collate(samples)
        length = int(batch.pop("length")[0])
        for key, axis in TIME_AXIS.items():
            if key in batch:
                batch[key] = batch[key].narrow(axis, 0, length)
        return batch
