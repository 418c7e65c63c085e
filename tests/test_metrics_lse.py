"""LSE-C / LSE-D: syncnet_python's offset search (planted shifts, its sign, parity with a literal port), the
window arithmetic, the MFCC, and the SyncNet architecture the public weights load into."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dawn_lightning.metrics.lse import LipSyncError, load_syncnet_v2, offset_search, sync_scores, sync_windows
from dawn_lightning.metrics.mfcc import mfcc
from dawn_lightning.metrics.weights import WeightsFormatError
from dawn_lightning.models.syncnet import SyncNetV2

pytestmark = pytest.mark.usefixtures("one_thread")


def planted(shift: int, frames: int = 120, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio features a_t ~ N(0, I) and video features v_t = a_{t - shift} (the video lags by ``shift``)."""
    generator = torch.Generator().manual_seed(seed)
    audio = torch.randn(frames + 40, dim, generator=generator)
    video = audio[20 - shift : 20 - shift + frames]
    return video, audio[20 : 20 + frames]


@pytest.mark.parametrize("shift", [-10, -4, -1, 0, 3, 7, 10])
def test_offset_search_finds_a_planted_shift_with_its_sign(shift):
    offset, distance, confidence, _ = offset_search(*planted(shift))
    assert offset == shift
    assert confidence > 1.0
    # the minimum is only the zero-padding term: |shift| edge frames compared with zero vectors
    assert distance < 0.2 * (abs(shift) + 1)


def test_offset_search_stays_in_range_and_is_unconfident_without_sync():
    offset, _, _, mean = offset_search(*planted(20))
    assert -15 <= offset <= 15 and len(mean) == 31
    generator = torch.Generator().manual_seed(3)
    _, _, confidence, _ = offset_search(
        torch.randn(100, 16, generator=generator), torch.randn(100, 16, generator=generator)
    )
    _, _, synced, _ = offset_search(*planted(0))
    assert confidence < 0.1 * synced


def test_offset_search_equals_a_literal_port_of_syncnet_python():
    generator = torch.Generator().manual_seed(4)
    video, audio = torch.randn(40, 8, generator=generator), torch.randn(40, 8, generator=generator)
    vshift = 15
    padded = F.pad(audio, (0, 0, vshift, vshift))
    dists = [
        F.pairwise_distance(video[[i], :].repeat(2 * vshift + 1, 1), padded[i : i + 2 * vshift + 1, :])
        for i in range(len(video))
    ]
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    offset, distance, confidence, mean = offset_search(video, audio)
    assert torch.allclose(mean, mdist, atol=1e-6)
    assert offset == vshift - int(minidx)
    assert distance == pytest.approx(float(minval), abs=1e-6)
    assert confidence == pytest.approx(float(torch.median(mdist) - minval), abs=1e-6)


def test_mfcc_shapes_and_int16_scaling():
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(640 * 30)).astype(np.float32)
    coefficients = mfcc(audio)
    assert coefficients.shape == (13, 4 * 30 - 1)
    unscaled = mfcc(audio, int16_scale=False)
    assert np.allclose(coefficients[1:], unscaled[1:], atol=1e-3)
    assert np.allclose(coefficients[0] - unscaled[0], 2 * math.log(32768), atol=1e-3)


def test_windows_cover_the_last_mfcc_frame():
    frames = torch.zeros(3, 30, 8, 8)
    lips, sound = sync_windows(frames, torch.zeros(13, 4 * 30 - 1), audio_frames=30)
    assert lips.shape == (25, 3, 5, 8, 8) and sound.shape == (25, 1, 13, 20)
    with pytest.raises(ValueError, match="at least 6 frames"):
        sync_windows(frames[:, :5], torch.zeros(13, 19), audio_frames=5)


class ToyEmbedder(torch.nn.Module):
    """Lip embedding: the brightness of the 5 frames; audio embedding: the log energy (MFCC c0) of the 5 video
    frames, mapped by the same [low, high] -> [0, 1]. A video whose brightness follows its c0 is in sync."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = low, high
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the metric reads the device from a parameter

    def prepare(self, frames):
        return frames.float().mean(-1)[None] / 255  # (1, T, H, W)

    def forward_lip(self, lips):
        return lips.mean((1, 3, 4))  # (B, 5)

    def forward_aud(self, sound):
        energy = sound[:, 0, 0].unflatten(1, (5, 4)).mean(-1)  # (B, 5)
        return (energy - self.low) / (self.high - self.low)


def test_lse_metric_scores_synced_video_better_than_shifted_audio():
    rng = np.random.default_rng(0)
    loudness = np.repeat(rng.uniform(0.01, 0.5, 20), 5)  # 100 frames, 20 "syllables"
    audio = (np.repeat(loudness, 640) * rng.standard_normal(64000)).astype(np.float32)
    c0 = mfcc(audio)[0]
    per_frame = np.array([c0[4 * t : 4 * t + 4].mean() for t in range(100)])
    low, high = per_frame.min(), per_frame.max()
    brightness = np.round((per_frame - low) / (high - low) * 255).astype(np.uint8)
    frames = np.ascontiguousarray(np.broadcast_to(brightness[:, None, None, None], (100, 4, 4, 3)))
    net = ToyEmbedder(low, high)
    metric = LipSyncError(net)
    metric.update(frames, audio)
    metric.update(frames[:97], audio[3 * 640 :])  # video frame t shows audio frame t - 3: the video lags
    metric.update(frames[3:], audio[: 97 * 640])  # video frame t shows audio frame t + 3: the video leads
    offsets = [float(o) for o in metric.offset]
    scores = {k: float(v) for k, v in metric.compute().items()}
    assert offsets == [0.0, 3.0, -3.0]
    assert scores["offset"] == 2.0 and scores["in_sync"] == pytest.approx(1 / 3)
    shifted = sync_scores(net, frames, np.roll(audio, 640 * 40))
    assert scores["lse_c"] > 3 * shifted[2]
    assert scores["lse_d"] < shifted[1]


def test_syncnet_v2_architecture_loads_its_state_dict(tmp_path):
    net = SyncNetV2()
    assert sum(p.numel() for p in net.parameters()) == 13_631_616
    assert len(net.state_dict()) == 102
    path = tmp_path / "syncnet_v2.model"
    torch.save(net.state_dict(), path)
    loaded = load_syncnet_v2(str(path))
    assert torch.equal(loaded.netcnnlip[0].weight, net.netcnnlip[0].weight)
    torch.save({"netcnnaud.0.weight": torch.zeros(1)}, tmp_path / "wrong.model")
    with pytest.raises(WeightsFormatError, match=r"metrics\.lse\.weights: .*wrong\.model does not fit"):
        load_syncnet_v2(str(tmp_path / "wrong.model"))
