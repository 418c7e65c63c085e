"""Generation from checkpoints trained on HuBERT features: the extractor comes from a local model folder
(`audio_features.model_path`, else the folder the checkpoints record while it exists); no folder, a folder of
another model, or a HuBERT folder for log-mel checkpoints are clear errors. A tiny random HuBERT stands in."""

from __future__ import annotations

import shutil

import av
import pytest
from PIL import Image

from dawn_lightning.cli.generate import generate
from dawn_lightning.config import compose
from dawn_lightning.data.audio_features import features_from_spec
from dawn_lightning.pipeline import DawnPipeline
from tests.pipeline_fixtures import (
    portrait,
    speech,
    tiny_checkpoints,
    tiny_hubert,
    write_stage1,
    write_stage2,
    write_stage3,
    write_wav,
)

transformers = pytest.importorskip("transformers", reason="HuBERT features need the `hubert` extra")


@pytest.fixture(scope="module")
def hubert(tmp_path_factory):
    """{"folder", "spec", "checkpoints", "z_channels"}: a tiny HuBERT (16 wide), checkpoints trained on it."""
    from dawn_lightning.data.speech_encoders import HubertFeatures

    root = tmp_path_factory.mktemp("hubert")
    folder = tiny_hubert(root / "models" / "tiny-hubert", 16)
    spec = HubertFeatures(str(folder)).spec
    paths = {k: root / f"{k}.ckpt" for k in ("motion", "pose_blink", "diffusion")}
    motion = write_stage1(paths["motion"])
    write_stage2(paths["pose_blink"], spec)
    write_stage3(paths["diffusion"], paths["motion"], motion.z_channels, spec)
    return {"folder": folder, "spec": spec, "checkpoints": paths, "z_channels": motion.z_channels}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubert_inputs")
    Image.fromarray(portrait((72, 72))).save(root / "face.png")
    write_wav(root / "speech.wav", speech(0.4)[0])  # 10 frames
    return root


def config(checkpoints, **overrides):
    args = [f"checkpoints.{k}={v}" for k, v in checkpoints.items()]
    args += ["sampler.num_steps=2", "device=cpu", "face.model_path=null"]
    return compose("generate", args + [f"{k}={v}" for k, v in overrides.items()])


def test_spec_records_the_folder_and_the_extractor_rebuilds_from_it(hubert):
    spec = hubert["spec"]
    assert spec["kind"] == "hubert" and spec["dim"] == 16 and spec["model"] == "tiny-hubert"
    assert spec["path"] == str(hubert["folder"].resolve())
    extractor = features_from_spec(spec)  # the recorded folder still exists
    assert extractor.dim == 16 and extractor.spec == spec


def test_dawn_generate_with_hubert_checkpoints(hubert, inputs, tmp_path, one_thread):
    out = tmp_path / "talk.mp4"
    overrides = {"portrait": inputs / "face.png", "speech": inputs / "speech.wav", "out": out}
    generate(config(hubert["checkpoints"], **overrides, **{"audio_features.model_path": hubert["folder"]}))
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 10 and frames[0].shape == (64, 64, 3)


def test_pipeline_features_come_from_the_configured_hubert(hubert, inputs, one_thread):
    pipeline = DawnPipeline.from_checkpoints(
        *hubert["checkpoints"].values(), encoder_path=hubert["folder"], sampler={"num_steps": 1}
    )
    assert pipeline.features.dim == 16
    video = pipeline(inputs / "face.png", inputs / "speech.wav", seed=0)
    assert video.frames.shape == (10, 64, 64, 3)


def test_missing_and_moved_hubert_folder_name_the_setting(hubert, tmp_path):
    gone = hubert["spec"] | {"path": str(tmp_path / "gone" / "tiny-hubert")}
    with pytest.raises(FileNotFoundError) as error:
        features_from_spec(gone, setting="audio_features.model_path")
    message = str(error.value)
    assert "audio_features.model_path=/path/to/tiny-hubert" in message
    assert "facebook/hubert-large-ls960-ft" in message and "no longer holds the model" in message
    with pytest.raises(FileNotFoundError, match="config.json: missing; audio_features.model_path"):
        features_from_spec(gone, str(tmp_path), "audio_features.model_path")
    # the folder moved: found again through the setting
    moved = tmp_path / "elsewhere" / "tiny-hubert"
    shutil.copytree(hubert["folder"], moved)
    assert features_from_spec(gone, str(moved)).dim == 16


def test_missing_hubert_stops_dawn_generate_naming_the_setting(hubert, inputs, tmp_path):
    """Checkpoints whose recorded HuBERT folder is gone, no setting: an error, and nothing is written."""
    spec = hubert["spec"] | {"path": str(tmp_path / "gone" / "tiny-hubert")}
    paths = dict(hubert["checkpoints"])
    paths["pose_blink"], paths["diffusion"] = tmp_path / "stage2.ckpt", tmp_path / "stage3.ckpt"
    write_stage2(paths["pose_blink"], spec)
    write_stage3(paths["diffusion"], paths["motion"], hubert["z_channels"], spec)
    out = tmp_path / "talk.mp4"
    cfg = config(paths, portrait=inputs / "face.png", speech=inputs / "speech.wav", out=out)
    with pytest.raises(FileNotFoundError, match=r"set audio_features\.model_path=.*hubert-large-ls960-ft"):
        generate(cfg)
    assert not out.exists()


def test_another_hubert_or_hubert_for_logmel_checkpoints_is_an_error_naming_both(hubert, tmp_path):
    other = tiny_hubert(tmp_path / "other-hubert", 24)
    with pytest.raises(ValueError, match="differs from the one the checkpoints were trained with") as error:
        features_from_spec(hubert["spec"], str(other), "audio_features.model_path")
    message = str(error.value)
    assert "'model': 'tiny-hubert'" in message and "'dim': 16" in message  # trained with
    assert "'model': 'other-hubert'" in message and "'dim': 24" in message  # configured
    renamed = tmp_path / "renamed"
    shutil.copytree(hubert["folder"], renamed)
    with pytest.raises(ValueError, match="'model': 'renamed'"):
        features_from_spec(hubert["spec"], str(renamed))
    logmel = tiny_checkpoints(tmp_path / "logmel")
    with pytest.raises(ValueError, match="audio_features.model_path=.* is set, but .*'logmel'"):
        DawnPipeline.from_checkpoints(
            logmel["motion"], logmel["pose_blink"], logmel["diffusion"], encoder_path=hubert["folder"]
        )
