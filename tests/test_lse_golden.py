"""LSE exactly as syncnet_python computes it: our `syncnet_v2` path against golden vectors made by running
joonson/syncnet_python's ``SyncNetInstance.evaluate``, unmodified, on a face-cropped real clip with weights
drawn by a documented rule (../shared/reference/golden/syncnet_v2/README.md). Papers' LSE-C / LSE-D come from
that function with the public weights, so matching it with these weights means matching them with the real
ones. Skipped where ../shared is absent."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dawn_lightning import SAMPLES_PER_FRAME
from dawn_lightning.metrics.lse import MAX_SHIFT, offset_search, shift_distances, sync_scores, sync_windows
from dawn_lightning.metrics.mfcc import mfcc
from dawn_lightning.models.syncnet import SyncNetV2

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "golden" / "syncnet_v2"
pytestmark = pytest.mark.skipif(
    not (GOLDEN / "syncnet_v2_golden.npz").is_file(), reason="needs ../shared/reference/golden/syncnet_v2"
)


def rule_weights() -> dict[str, torch.Tensor]:
    """The golden's weights: key i of syncnet_python's state dict (in its order) drawn from
    torch.Generator().manual_seed(i); BatchNorm running statistics from the shipped file."""
    from safetensors.torch import load_file

    shapes = json.loads((GOLDEN / "syncnet_v2_shapes.json").read_text())
    statistics = load_file(GOLDEN / "syncnet_v2_bn_stats.safetensors")
    state = {}
    for i, (key, shape) in enumerate(shapes.items()):
        generator = torch.Generator().manual_seed(i)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith(("running_mean", "running_var")):
            state[key] = statistics[key]
        elif len(shape) == 1 and key.endswith(".weight"):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) == 1 and key.endswith(".bias"):
            state[key] = 0.1 * torch.randn(shape, generator=generator)
        else:
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=generator) * math.sqrt(2 / fan_in)
    return state


@pytest.fixture(scope="module")
def golden():
    arrays = dict(np.load(GOLDEN / "syncnet_v2_golden.npz"))
    record = json.loads((GOLDEN / "syncnet_v2_golden.json").read_text())
    net = SyncNetV2()
    net.load_state_dict(rule_weights())
    frames = np.ascontiguousarray(arrays["frames_bgr"][..., ::-1])  # our input is RGB, as decoders give it
    audio = arrays["audio_int16"].astype(np.float32) / 32768
    return net.eval(), frames, audio, arrays, record


def test_mfcc_matches_python_speech_features(golden):
    _, _, audio, arrays, _ = golden
    ours = mfcc(audio)
    assert ours.shape == arrays["mfcc"].shape == (13, 300)
    np.testing.assert_allclose(ours, arrays["mfcc"], rtol=1e-6, atol=1e-6 * np.abs(arrays["mfcc"]).max())


@torch.no_grad()
def test_distances_offset_and_confidence_match_syncnet_python(golden):
    net, frames, audio, arrays, record = golden
    prepared = net.prepare(torch.from_numpy(frames))
    lips, sound = sync_windows(prepared, torch.from_numpy(mfcc(audio)), len(audio) // SAMPLES_PER_FRAME)
    video = torch.cat([net.forward_lip(lips[i : i + 20]) for i in range(0, len(lips), 20)])
    speech = torch.cat([net.forward_aud(sound[i : i + 20]) for i in range(0, len(sound), 20)])
    for ours, name in ((video[0], "lip"), (speech[0], "audio")):
        first8 = torch.tensor(record[f"{name}_embedding_first_window_first8"])
        torch.testing.assert_close(ours[:8], first8, rtol=1e-4, atol=1e-5)
        assert float(ours.norm()) == pytest.approx(record[f"{name}_embedding_first_window_norm"], rel=1e-4)
    dists = shift_distances(video, speech, MAX_SHIFT)
    assert dists.shape == arrays["dists"].shape == (70, 31)
    np.testing.assert_allclose(dists.numpy(), arrays["dists"], rtol=1e-4)
    offset, distance, confidence, mean = offset_search(video, speech, MAX_SHIFT)
    np.testing.assert_allclose(mean.numpy(), record["mean_dist_per_shift"], rtol=1e-4)
    assert offset == record["offset"]
    assert distance == pytest.approx(record["min_dist"], rel=1e-4)
    assert confidence == pytest.approx(record["confidence"], rel=1e-4)
    # the metric's own entry point gives the same three numbers
    assert sync_scores(net, frames, audio) == (offset, pytest.approx(distance), pytest.approx(confidence))
