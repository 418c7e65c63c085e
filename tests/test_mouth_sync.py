"""The weight-free lip-sync proxy: high on real synthetic talking faces, ~0 when frozen or out of order."""

import numpy as np
import pytest

from dawn_lightning.metrics.mouth_sync import mouth_audio_correlation, mouth_darkness, speech_energy


def test_proxy_separates_synced_frozen_and_shuffled_mouths(synthetic):
    rng = np.random.default_rng(0)
    for info in synthetic.split("test"):
        reader = synthetic.reader(info)
        frames, audio = reader.frames(range(info.num_frames)), reader.audio()
        box = reader.signals["mouth_box"][0]
        assert mouth_audio_correlation(frames, box, audio) > 0.6
        assert mouth_audio_correlation(np.repeat(frames[:1], len(frames), 0), box, audio) == 0.0
        shuffled = frames[rng.permutation(len(frames))]
        assert abs(mouth_audio_correlation(shuffled, box, audio)) < 0.4


def test_energy_and_darkness_shapes_and_errors():
    assert speech_energy(np.ones(1000), 3).tolist() == pytest.approx([1.0, np.sqrt(360 / 640), 0.0])
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[1] = 255
    assert mouth_darkness(frames, np.array([0.25, 0.25, 0.75, 0.75])).tolist() == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError, match="covers no pixel"):
        mouth_darkness(frames, np.array([0.5, 0.5, 0.5, 0.5]), margin=0)
