"""In-sync and shifted (mouth window, speech window) pairs from a clip store, for training a SyncNet.

Every clip of a split is loaded once: its frames cropped to a fixed mouth region (the store's mouth boxes of
the training split, 2nd-98th percentile, grown by ``margin`` of their size on each side, so the mouth stays
inside whatever the head does) and its MFCC (`metrics.mfcc`, 4 per video frame). A sample is a 5-frame lip
window at frame v, the MFCC window at v (in sync) and the MFCC window at v + s, with 3 <= |s| <= 15 frames
(shifted; the shift is drawn again every epoch in training, fixed per sample in validation).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import gaussian_blur

from dawn_lightning import SAMPLES_PER_FRAME
from dawn_lightning.data.datamodules import StoreDataModule
from dawn_lightning.data.datasets import BadClips
from dawn_lightning.data.sampling import Key, sample_rng, split_key
from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.metrics.mfcc import mfcc
from dawn_lightning.models.syncnet import MFCC_PER_FRAME, MFCC_WINDOW, WINDOW_FRAMES, crop_mouth


def mouth_region(store: ClipStore, split: str = "train", margin: float = 0.3) -> list[float]:
    """(x0, y0, x1, y1) in [0, 1]: the region that holds the mouth boxes of ``split`` (see the module)."""
    boxes = np.concatenate([store.reader(c).signals["mouth_box"] for c in store.split(split)])
    x0, y0 = np.percentile(boxes[:, 0], 2), np.percentile(boxes[:, 1], 2)
    x1, y1 = np.percentile(boxes[:, 2], 98), np.percentile(boxes[:, 3], 98)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return [
        float(max(0.0, x0 - dx)),
        float(max(0.0, y0 - dy)),
        float(min(1.0, x1 + dx)),
        float(min(1.0, y1 + dy)),
    ]


class RenderingDegradation:
    """Training-time damage to the lip windows, so that SyncNet judges the mouth's movement rather than the
    texture of real frames: generated videos are re-rendered (blurred, resampled) versions of a face whose
    mouth often moves less than the speaker's. Each draw comes from the sample's generator: a weaker mouth
    (probability ``attenuate_prob``: the lips pulled towards the clip's resting mouth, keeping a fraction
    uniform in ``attenuate`` of their difference), a Gaussian blur (``blur_prob``, sigma uniform in ``blur``
    crop pixels), a down-and-up rescale by 2 (``rescale_prob``) and Gaussian noise of std up to ``noise`` (in
    the lips' [-1, 1] units)."""

    def __init__(
        self,
        blur: tuple[float, float] = (0.3, 1.5),
        blur_prob: float = 0.5,
        rescale_prob: float = 0.5,
        noise: float = 0.04,
        attenuate: tuple[float, float] = (0.2, 1.0),
        attenuate_prob: float = 0.0,
    ):
        self.blur, self.blur_prob, self.rescale_prob, self.noise = tuple(blur), blur_prob, rescale_prob, noise
        self.attenuate, self.attenuate_prob = tuple(attenuate), attenuate_prob

    def __call__(self, lips: torch.Tensor, rng: np.random.Generator, rest: torch.Tensor) -> torch.Tensor:
        """lips (3, T, s, s) in [-1, 1], the clip's resting mouth (3, s, s) -> the lips, damaged."""
        if rng.random() < self.attenuate_prob:
            lips = rest[:, None] + float(rng.uniform(*self.attenuate)) * (lips - rest[:, None])
        frames = lips.permute(1, 0, 2, 3)  # (T, 3, s, s)
        if rng.random() < self.blur_prob:
            sigma = float(rng.uniform(*self.blur))
            frames = gaussian_blur(frames, kernel_size=2 * math.ceil(2 * sigma) + 1, sigma=sigma)
        if rng.random() < self.rescale_prob:
            size = frames.shape[-1]
            small = F.interpolate(frames, scale_factor=0.5, mode="bilinear", antialias=True)
            frames = F.interpolate(small, size=(size, size), mode="bilinear")
        if self.noise:
            std = float(rng.uniform(0, self.noise))
            noise = np.random.default_rng(rng.integers(2**63)).standard_normal(frames.shape, dtype=np.float32)
            frames = frames + std * torch.from_numpy(noise)
        return frames.clamp(-1, 1).permute(1, 0, 2, 3).contiguous()


class SyncPairDataset(Dataset):
    """Items {"lips" (3, 5, s, s), "synced" (1, 13, 20), "shifted" (1, 13, 20), "shift" ()}."""

    def __init__(
        self,
        store: ClipStore,
        split: str,
        crop_box: list[float],
        crop_size: int,
        train: bool,
        seed: int = 0,
        samples_per_clip: int = 16,
        min_shift: int = 3,
        max_shift: int = 15,
        degrade: RenderingDegradation | None = None,
        bad_clips: BadClips | None = None,
    ):
        self.train, self.seed, self.samples_per_clip = train, seed, samples_per_clip
        self.degrade = degrade if train else None
        self.min_shift, self.max_shift = min_shift, max_shift
        self.clips = []
        bad_clips = bad_clips if bad_clips is not None else BadClips()
        for info in store.split(split):
            reader = store.reader(info)
            try:
                frames = torch.from_numpy(reader.frames(range(info.num_frames)))
            except StoreError as error:  # read whole here: a bad clip is left out (or stops the run)
                bad_clips.handle(info.clip_id, error)
                continue
            crops = crop_mouth(frames, crop_box, crop_size).half()
            rest = crops.float().median(0).values if self.degrade is not None else None
            audio = reader.audio()
            coefficients = torch.from_numpy(mfcc(audio))
            windows = min(info.num_frames, len(audio) // SAMPLES_PER_FRAME) - WINDOW_FRAMES
            if windows > 2 * min_shift:
                self.clips.append((crops, coefficients, windows, rest))
        if not self.clips:
            raise ValueError(f"{store.root}: no {split} clip is long enough for sync pairs")

    def __len__(self) -> int:
        return len(self.clips) * self.samples_per_clip

    def __getitem__(self, key: int | Key) -> dict[str, torch.Tensor]:
        rng = sample_rng(self.seed, key, self.train)
        crops, coefficients, windows, rest = self.clips[split_key(key)[1] // self.samples_per_clip]
        start = int(rng.integers(windows))
        # clips have more than 2 * min_shift windows, so some shift stays inside the clip
        shifts = [s for s in range(-self.max_shift, self.max_shift + 1) if abs(s) >= self.min_shift]
        shift = int(rng.choice([s for s in shifts if 0 <= start + s < windows]))
        lips = crops[start : start + WINDOW_FRAMES].float().permute(1, 0, 2, 3)
        if self.degrade is not None:
            lips = self.degrade(lips, rng, rest)

        def window(frame: int) -> torch.Tensor:
            return coefficients[:, frame * MFCC_PER_FRAME : frame * MFCC_PER_FRAME + MFCC_WINDOW][None]

        return {"lips": lips, "synced": window(start), "shifted": window(start + shift), "shift": shift}


class SyncPairDataModule(StoreDataModule):
    """Sync pairs of the store's splits; ``crop_box`` and the MFCC statistics come from the training split."""

    def __init__(
        self,
        store_dir: str,
        crop_size: int = 32,
        margin: float = 0.3,
        min_shift: int = 3,
        max_shift: int = 15,
        degrade: dict | None = None,
        **kwargs,
    ):
        super().__init__(store_dir, **kwargs)
        self.degrade = None if degrade is None else RenderingDegradation(**degrade)
        self.crop_size, self.margin, self.min_shift, self.max_shift = crop_size, margin, min_shift, max_shift

    @cached_property
    def crop_box(self) -> list[float]:
        return mouth_region(self.store, "train", self.margin)

    def mfcc_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-coefficient mean and std (13,) over the training clips' MFCC frames."""
        if "train" not in self.datasets:
            self.datasets["train"] = self.make_dataset("train", True)
        every = torch.cat([c[1] for c in self.datasets["train"].clips], dim=1)
        return every.mean(1), every.std(1).clamp_min(1e-3)

    def make_dataset(self, split: str, train: bool) -> Dataset:
        return SyncPairDataset(
            self.store,
            split,
            self.crop_box,
            self.crop_size,
            train,
            self.seed,
            self.samples_per_clip,
            self.min_shift,
            self.max_shift,
            self.degrade,
            self.bad_clips,
        )
