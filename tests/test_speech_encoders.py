"""wav2vec 2.0 and the Whisper encoder as audio features, from local model folders (tiny random models built
from configs here, nothing downloaded): one row per video frame, the spec recorded and rebuilt, a mismatch
or a missing folder named, and checkpoints trained on them generating through the pipeline."""

import numpy as np
import pytest

from dawn_lightning import SAMPLES_PER_FRAME
from dawn_lightning.data.audio_features import features_from_spec
from dawn_lightning.data.speech_encoders import Wav2Vec2Features, WhisperFeatures
from dawn_lightning.pipeline import DawnPipeline
from tests.pipeline_fixtures import portrait, speech, write_stage1, write_stage2, write_stage3

transformers = pytest.importorskip("transformers", reason="speech encoders need the `hubert` extra")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """{"wav2vec2": folder, "whisper": folder}: random 16-wide models saved as from_pretrained reads them."""
    import torch

    root = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(0)
    wav2vec2 = transformers.Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    transformers.Wav2Vec2Model(wav2vec2).save_pretrained(root / "tiny-wav2vec2")
    whisper = transformers.WhisperConfig(
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        vocab_size=64,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    transformers.WhisperModel(whisper).save_pretrained(root / "tiny-whisper")
    transformers.WhisperFeatureExtractor().save_pretrained(root / "tiny-whisper")
    return {"wav2vec2": root / "tiny-wav2vec2", "whisper": root / "tiny-whisper"}


@pytest.mark.parametrize("kind", ["wav2vec2", "whisper"])
def test_one_row_per_frame_and_the_spec_rebuilds_the_encoder(encoders, kind):
    features = {"wav2vec2": Wav2Vec2Features, "whisper": WhisperFeatures}[kind](str(encoders[kind]))
    assert features.dim == 16 and features.spec["kind"] == kind and features.spec["model"] == f"tiny-{kind}"
    audio = speech(2.0)[0]
    out = features(audio, len(audio) // SAMPLES_PER_FRAME)
    assert out.shape == (50, 16) and out.dtype == np.float32 and np.isfinite(out).all()
    assert out.std(axis=0).mean() > 1e-3  # rows differ over time
    rebuilt = features_from_spec(features.spec)  # the recorded folder still exists
    assert rebuilt == features
    np.testing.assert_array_equal(rebuilt(audio, 50), out)


def test_whisper_reads_speech_longer_than_its_30_second_window(encoders):
    features = WhisperFeatures(str(encoders["whisper"]))
    audio = np.tile(speech(1.0)[0], 31)  # 31 s: two windows
    out = features(audio, 775)
    assert out.shape == (775, 16) and np.isfinite(out).all()
    assert out[760:].std(axis=0).mean() > 1e-3  # the second window's rows are real, not padding


def test_a_missing_or_different_model_is_named(encoders, tmp_path):
    spec = Wav2Vec2Features(str(encoders["wav2vec2"])).spec
    moved = spec | {"path": str(tmp_path / "gone")}
    with pytest.raises(FileNotFoundError, match=r"wav2vec 2.0 features .* set audio_features\.model_path="):
        features_from_spec(moved)
    impostor = tmp_path / "tiny-wav2vec2"  # the right name, but a Whisper model inside
    impostor.mkdir()
    (impostor / "config.json").write_text((encoders["whisper"] / "config.json").read_text())
    with pytest.raises(ValueError, match="differs from the one the checkpoints were trained with"):
        features_from_spec(spec, str(impostor))
    with pytest.raises(
        FileNotFoundError, match=r"Whisper features need the setting audio_features\.model_path"
    ):
        WhisperFeatures(None)


def test_checkpoints_trained_on_whisper_features_generate(encoders, tmp_path):
    spec = WhisperFeatures(str(encoders["whisper"])).spec
    paths = {k: tmp_path / f"{k}.ckpt" for k in ("motion", "pose_blink", "diffusion")}
    motion = write_stage1(paths["motion"])
    write_stage2(paths["pose_blink"], spec)
    write_stage3(paths["diffusion"], paths["motion"], motion.z_channels, spec)
    pipeline = DawnPipeline.from_checkpoints(
        *paths.values(), encoder_path=encoders["whisper"], sampler={"num_steps": 1}
    )
    video = pipeline(portrait((72, 72)), speech(0.4)[0], seed=0)
    assert video.frames.shape == (10, 64, 64, 3)
