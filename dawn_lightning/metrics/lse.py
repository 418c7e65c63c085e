"""LSE-C / LSE-D (lip-sync error, confidence and distance) as in joonson/syncnet_python.

Per video: lip windows of 5 frames [v, v + 5) and MFCC windows [4v, 4v + 20) for v < min(T, N // 640) - 5 are
embedded; each lip embedding is compared (L2, eps 1e-6) with the audio embeddings shifted by -15..+15 frames
(zero vectors past the ends); the mean distance per shift gives LSE-D = its minimum, LSE-C = its median minus
the minimum, and the offset = 15 - argmin (positive when the video lags the audio). A test set's LSE is the
mean over videos.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from dawn_lightning import SAMPLES_PER_FRAME
from dawn_lightning.metrics.mfcc import mfcc
from dawn_lightning.metrics.weights import load_into, load_state_dict
from dawn_lightning.models.syncnet import MFCC_PER_FRAME, MFCC_WINDOW, WINDOW_FRAMES, SyncNetV2

SYNCNET_FILE = "syncnet_v2.model"
SYNCNET_URL = f"https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/{SYNCNET_FILE}"
MAX_SHIFT = 15
IN_SYNC_FRAMES = 1  # a video counts as in sync when SyncNet's offset is within this many frames of 0


class SyncEmbedder(Protocol):
    def prepare(self, frames: torch.Tensor) -> torch.Tensor: ...
    def forward_lip(self, lips: torch.Tensor) -> torch.Tensor: ...
    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor: ...


def shift_distances(video: torch.Tensor, audio: torch.Tensor, max_shift: int = MAX_SHIFT) -> torch.Tensor:
    """Lip embeddings (N, d) and audio embeddings (N, d) -> the distance of each lip window to the audio
    shifted by -max_shift..+max_shift (N, 2 * max_shift + 1), zero vectors past the ends: syncnet_python's
    ``calc_pdist``, vectorised."""
    window = 2 * max_shift + 1
    padded = F.pad(audio, (0, 0, max_shift, max_shift))
    candidates = rearrange(padded.unfold(0, window, 1), "n d k -> n k d")
    return F.pairwise_distance(video[:, None].expand_as(candidates), candidates)


def offset_search(
    video: torch.Tensor, audio: torch.Tensor, max_shift: int = MAX_SHIFT
) -> tuple[int, float, float, torch.Tensor]:
    """Lip embeddings (N, d) and audio embeddings (N, d) -> (offset, LSE-D, LSE-C, mean distance per
    candidate (2 * max_shift + 1,)): syncnet_python's scores of `shift_distances`."""
    mean = shift_distances(video, audio, max_shift).mean(0)
    minimum, index = torch.min(mean, 0)
    return max_shift - int(index), float(minimum), float(torch.median(mean) - minimum), mean


def sync_windows(
    frames: torch.Tensor, coefficients: torch.Tensor, audio_frames: int
) -> tuple[torch.Tensor, ...]:
    """Prepared frames (3, T, h, w) and MFCC (13, M) -> lip windows (N, 3, 5, h, w) and MFCC windows
    (N, 1, 13, 20), N = min(T, audio_frames) - 5."""
    count = min(frames.shape[1], audio_frames) - WINDOW_FRAMES
    if count < 1:
        raise ValueError(
            f"lip sync needs at least {WINDOW_FRAMES + 1} frames of video and audio, got {count + 5}"
        )
    lips = frames.unfold(1, WINDOW_FRAMES, 1)[:, :count]
    lips = rearrange(lips, "c n h w k -> n c k h w")
    starts = torch.arange(count) * MFCC_PER_FRAME
    index = starts[:, None] + torch.arange(MFCC_WINDOW)[None]
    return lips, rearrange(coefficients[:, index], "c n k -> n 1 c k")


@torch.no_grad()
def sync_scores(
    net: SyncEmbedder, frames: np.ndarray, audio: np.ndarray, batch_size: int = 20, max_shift: int = MAX_SHIFT
) -> tuple[int, float, float]:
    """(offset, LSE-D, LSE-C) of one video: uint8 frames (T, H, W, 3) at 25 fps, 16 kHz audio (N,) in
    [-1, 1]."""
    device = next(net.parameters()).device
    prepared = net.prepare(torch.as_tensor(np.ascontiguousarray(frames)).to(device))
    coefficients = torch.from_numpy(mfcc(audio)).to(device)
    lips, sound = sync_windows(prepared, coefficients, len(audio) // SAMPLES_PER_FRAME)
    video_emb, audio_emb = [], []
    for start in range(0, len(lips), batch_size):
        video_emb.append(net.forward_lip(lips[start : start + batch_size]))
        audio_emb.append(net.forward_aud(sound[start : start + batch_size]))
    offset, distance, confidence, _ = offset_search(torch.cat(video_emb), torch.cat(audio_emb), max_shift)
    return offset, distance, confidence


def load_syncnet_v2(path: str, setting: str = "metrics.lse.weights") -> SyncNetV2:
    """The public ``syncnet_v2.model`` (a plain state dict, loaded with ``weights_only=True``)."""
    what = f"syncnet_python's SyncNet weights, {SYNCNET_URL}"
    net = SyncNetV2()
    load_into(net, load_state_dict(path, setting, what), path, setting, what)
    return net.eval()


class LipSyncError(Metric):
    """LSE-C and LSE-D, the means over videos: ``update(frames (T, H, W, 3) uint8, audio (N,))`` scores one
    video; ``compute()`` gives {"lse_c", "lse_d", "offset", "in_sync"} (offset: the mean absolute AV offset,
    frames; in_sync: the share of videos whose offset is within ``IN_SYNC_FRAMES`` of 0).
    Per-video values are list states ("cat"), so every video counts once whatever the shard sizes."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, net: SyncEmbedder, max_shift: int = MAX_SHIFT, **kwargs):
        super().__init__(**kwargs)
        self.net = net.eval().requires_grad_(False)
        self.max_shift = max_shift
        for name in ("confidence", "distance", "offset"):
            self.add_state(name, [], dist_reduce_fx="cat")

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        return self

    def update(
        self,
        frames: np.ndarray | None = None,
        audio: np.ndarray | None = None,
        scores: tuple[int, float, float] | None = None,
    ) -> None:
        """Scores one video (frames and audio), or adds its ``scores`` (offset, LSE-D, LSE-C)."""
        if scores is None:
            scores = sync_scores(self.net, frames, audio, max_shift=self.max_shift)
        offset, distance, confidence = scores
        self.offset.append(torch.tensor([float(offset)], device=self.device))
        self.distance.append(torch.tensor([distance], dtype=torch.float64, device=self.device))
        self.confidence.append(torch.tensor([confidence], dtype=torch.float64, device=self.device))

    def compute(self) -> dict[str, torch.Tensor]:
        if len(self.distance) == 0:
            raise ValueError("LipSyncError: no video was scored")
        return {
            "lse_c": dim_zero_cat(self.confidence).mean(),
            "lse_d": dim_zero_cat(self.distance).mean(),
            "offset": dim_zero_cat(self.offset).abs().mean(),
            "in_sync": (dim_zero_cat(self.offset).abs() <= IN_SYNC_FRAMES).double().mean(),
        }
