"""Stage 3's curriculum-A targets precomputed by the frozen stage-1 model, so training does not run it.

A curriculum-A sample is ``frames`` consecutive frames whose first is the reference. Here every ``stride``-th
frame s of a clip (with s + frames <= its length) is such a start, and ``<dir>/<clip_id>/`` holds
``starts.npy`` (K,), ``x0.npy`` (K, 3, frames, h, w) and ``z_src.npy`` (K, C, h, w), float16, read
memory-mapped. ``<dir>/meta.json`` names the stage-1 checkpoint with its SHA-256, which training checks
against its own. A clip's folder appears whole (written beside, then renamed), so a killed run leaves nothing
half-written, and a re-run skips the clips already done; a clip that cannot be read is reported and skipped.

Curriculum B is not precomputed: its reference is any frame of the video, so its targets would be every frame
against every frame, N^2 per video. Colour jitter, which changes the frames before stage 1 sees them, does not
apply to precomputed targets.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from dawn_lightning.data.store import ClipStore, StoreError, read_json, write_json_atomic
from dawn_lightning.data.transforms import frames_to_tensor

log = logging.getLogger(__name__)
META = "meta.json"
ARRAYS = ("starts", "x0", "z_src")


def precompute_motion_targets(
    store_dir: str | Path,
    motion_ckpt: str | Path,
    out_dir: str | Path,
    frames: int = 20,
    stride: int = 4,
    splits: tuple[str, ...] = ("train",),
    batch_size: int = 8,
    device: str = "cpu",
) -> dict:
    """Writes the targets of every clip of ``splits`` to ``out_dir``; returns counts of clips done, skipped
    (done before, or too short) and failed."""
    from dawn_lightning.checkpoints import file_sha256, load_motion_autoencoder
    from dawn_lightning.models.audio_to_motion.motion_diffusion import motion_targets

    if frames < 1 or stride < 1:
        raise ValueError(f"frames and stride must be >= 1, got {frames}, {stride}")
    store, out = ClipStore(store_dir), Path(out_dir)
    meta = {
        "motion_ckpt": str(Path(motion_ckpt).resolve()),
        "motion_ckpt_sha256": file_sha256(motion_ckpt),
        "frames": frames,
        "stride": stride,
        "store": str(store.root),
    }
    if (out / META).exists():
        old = read_json(out / META)
        if any(old.get(k) != meta[k] for k in ("motion_ckpt_sha256", "frames", "stride")):
            raise ValueError(
                f"{out}: holds targets of stage 1 {old.get('motion_ckpt')} (sha256 "
                f"{str(old.get('motion_ckpt_sha256'))[:12]}...), frames {old.get('frames')}, stride "
                f"{old.get('stride')}; these would be {meta['motion_ckpt']} "
                f"({meta['motion_ckpt_sha256'][:12]}...), frames {frames}, stride {stride}: "
                "use another folder"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / META, meta)
    motion = load_motion_autoencoder(motion_ckpt).to(device).eval()
    counts = {"done": 0, "skipped": 0, "failed": 0}
    for split in splits:
        for info in store.split(split):
            target = out / info.clip_id
            starts = np.arange(0, info.num_frames - frames + 1, stride)
            if target.exists() or len(starts) == 0:
                counts["skipped"] += 1
                continue
            try:
                reader = store.reader(info)
                arrays = _clip_targets(motion_targets, motion, reader, starts, frames, batch_size, device)
            except (StoreError, RuntimeError, OSError) as error:
                log.error("%s: skipped, %s", store.clip_dir(info.clip_id), error)
                counts["failed"] += 1
                continue
            _write_atomically(target, arrays)
            counts["done"] += 1
    log.info("motion targets in %s: %s", out, counts)
    return counts


def _clip_targets(extract, motion, reader, starts, frames: int, batch_size: int, device: str) -> dict:
    video = frames_to_tensor(reader.frames(range(int(starts[-1]) + frames)))  # (N, 3, S, S)
    x0s, zs = [], []
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        clips = torch.stack([video[s : s + frames] for s in chunk]).to(device)  # (b, F, 3, S, S)
        x0, z = extract(motion, rearrange(clips, "b f c h w -> b c f h w"), clips[:, 0])
        x0s.append(x0.half().cpu())
        zs.append(z.half().cpu())
    return {"starts": starts, "x0": torch.cat(x0s).numpy(), "z_src": torch.cat(zs).numpy()}


def _write_atomically(target: Path, arrays: dict) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", array)
    os.replace(tmp, target)


class MotionTargets:
    """A folder of precomputed targets, read memory-mapped, clip by clip."""

    def __init__(self, directory: str | Path, frames: int):
        self.dir = Path(directory)
        self.meta = read_json(self.dir / META)
        if self.meta["frames"] != frames:
            raise StoreError(
                f"{self.dir}: targets of {self.meta['frames']}-frame clips, the data module asks for {frames}"
            )
        self._clips: dict[str, dict[str, np.ndarray]] = {}

    def has(self, clip_id: str) -> bool:
        return (self.dir / clip_id).is_dir()

    def clip(self, clip_id: str) -> dict[str, np.ndarray]:
        """{"starts" (K,), "x0" (K, 3, F, h, w), "z_src" (K, C, h, w)} of a clip."""
        if clip_id not in self._clips:
            try:
                self._clips[clip_id] = {
                    name: np.load(self.dir / clip_id / f"{name}.npy", mmap_mode="r") for name in ARRAYS
                }
            except (OSError, ValueError) as error:
                raise StoreError(f"{self.dir / clip_id}: unreadable motion targets ({error})") from None
        return self._clips[clip_id]

    def __getstate__(self):
        return self.__dict__ | {"_clips": {}}
