"""The portrait's initial state from a face backend: measured in the conventions preprocessing writes into the
store (portrait square = crop), a portrait without a face is an error naming the file, imported weights keep
their own pose/blink units, and without a backend the config default is announced once. The MediaPipe
tests use ../shared/models/face_landmarker.task and real portraits from ../shared/realdata (else skipped)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dawn_lightning.checkpoints import AUDIO_TO_MOTION, read, save
from dawn_lightning.cli.generate import generate
from dawn_lightning.data.preprocess.portrait_state import NoFaceError, measure_portrait
from dawn_lightning.pipeline import DawnPipeline, FaceInitialState, MeanInitialState
from tests.pipeline_fixtures import generate_config as config
from tests.pipeline_fixtures import portrait, speech, write_wav
from tests.preprocess_videos import FACE_MODEL, REAL, BoxFace, have_mediapipe

PORTRAIT = REAL / "float" / "assets" / "sam_altman_512x512.jpg"  # frontal, eyes open, 512 x 512
UNCROPPED = REAL / "EDTalk" / "test_data" / "uncrop_face.jpg"  # 840 x 1024
needs_mediapipe = pytest.mark.skipif(
    not have_mediapipe() or not PORTRAIT.is_file(),
    reason="needs mediapipe (the `face` extra), ../shared/models/face_landmarker.task and ../shared/realdata",
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("face_inputs")
    Image.fromarray(portrait((72, 72))).save(root / "face.png")
    Image.fromarray(np.zeros((90, 90, 3), np.uint8)).save(root / "black.png")  # no face for BoxFace
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(root / "blank.png")  # no face for MediaPipe
    write_wav(root / "speech.wav", speech(0.2)[0])  # 5 frames
    return root


def pipeline(checkpoints, **options) -> DawnPipeline:
    return DawnPipeline.from_checkpoints(
        checkpoints["motion"], checkpoints["pose_blink"], checkpoints["diffusion"], **options
    )


def test_measured_state_follows_the_store_conventions():
    """BoxFace's box spans 30-70 % of the frame: crop coordinates, scale = box width, (tx, ty) its centre."""
    face = measure_portrait(BoxFace(), np.full((200, 200, 3), 128, np.uint8))
    np.testing.assert_allclose(face.face_box, [0.3, 0.3, 0.7, 0.7], atol=1e-6)
    np.testing.assert_allclose(face.pose, [0, 0, 0, 0.4, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(face.blink, [1, 1])
    with pytest.raises(NoFaceError, match="no face found by the face backend"):
        measure_portrait(BoxFace(), np.zeros((64, 64, 3), np.uint8))


def test_pipeline_uses_the_backend_and_names_a_faceless_portrait(checkpoints, inputs, tmp_path, one_thread):
    generator = pipeline(checkpoints, face_backend=BoxFace(), sampler={"num_steps": 1})
    assert isinstance(generator.initial_state, FaceInitialState)
    image = torch.full((3, 64, 64), 0.5)
    state = generator._initial_state(inputs / "face.png", image)
    torch.testing.assert_close(state.face_box, torch.tensor([0.3, 0.3, 0.7, 0.7]))
    torch.testing.assert_close(state.pose, torch.tensor([0, 0, 0, 0.4, 0.5, 0.5]))
    video = generator(inputs / "face.png", inputs / "speech.wav")
    assert video.frames.shape == (5, 64, 64, 3)
    with pytest.raises(NoFaceError, match=r"black\.png: no face found"):
        generator(inputs / "black.png", inputs / "speech.wav")


def test_imported_units_keep_the_recorded_pose_and_blink(checkpoints, tmp_path, caplog):
    """A stage 3 that records its own initial state (imported DAWN weights: 3DDFA pose, eye ratios): the
    backend gives the face box only, and says so."""
    stage3 = read(checkpoints["diffusion"], AUDIO_TO_MOTION)
    stage3.record["initial_state"] = {"pose": [0, 0, 0, 5e-4, 56.5, 64.9], "blink": [0.3, 0.3]}
    save(tmp_path / "imported.ckpt", AUDIO_TO_MOTION, stage3.record, stage3.weights)
    with caplog.at_level(logging.WARNING, logger="dawn_lightning.pipeline"):
        generator = pipeline(checkpoints | {"diffusion": tmp_path / "imported.ckpt"}, face_backend=BoxFace())
    assert any("records its own pose/blink units" in r.getMessage() for r in caplog.records)
    state = generator.initial_state(torch.full((3, 64, 64), 0.5))
    torch.testing.assert_close(state.face_box, torch.tensor([0.3, 0.3, 0.7, 0.7]))
    torch.testing.assert_close(state.pose, torch.tensor([0, 0, 0, 5e-4, 56.5, 64.9]))
    torch.testing.assert_close(state.blink, torch.tensor([0.3, 0.3]))


def test_without_a_face_model_the_default_is_announced_once(checkpoints, inputs, monkeypatch, caplog):
    monkeypatch.setenv("DAWN_FACE_MODEL", "/nowhere/face_landmarker.task")
    off = config(checkpoints, **{"face.model_path": "null"})  # an explicit null wins over the env var
    assert isinstance(DawnPipeline.from_config(off).initial_state, MeanInitialState)
    monkeypatch.delenv("DAWN_FACE_MODEL")
    cfg = config(checkpoints)
    assert cfg.face.model_path is None and cfg.audio_features.model_path is None
    generator = DawnPipeline.from_config(cfg)
    assert isinstance(generator.initial_state, MeanInitialState)
    with caplog.at_level(logging.WARNING, logger="dawn_lightning.pipeline"):
        for _ in range(2):
            generator._initial_state(inputs / "face.png", torch.full((3, 64, 64), 0.5))
    notices = [r.getMessage() for r in caplog.records if "no face backend" in r.getMessage()]
    assert len(notices) == 1 and "face.model_path" in notices[0]


def test_a_missing_face_model_names_the_setting(checkpoints, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.task: face model not found.*face.model_path"):
        DawnPipeline.from_config(config(checkpoints, **{"face.model_path": tmp_path / "nowhere.task"}))


@needs_mediapipe
def test_real_portrait_through_dawn_generate(checkpoints, inputs, tmp_path, caplog, one_thread):
    out = tmp_path / "talk.mp4"
    cfg = config(
        checkpoints,
        portrait=PORTRAIT,
        speech=inputs / "speech.wav",
        out=out,
        **{"face.model_path": FACE_MODEL},
    )
    with caplog.at_level(logging.INFO, logger="dawn_lightning.pipeline"):
        generate(cfg)
    assert out.is_file()
    assert sum("portrait measured by the face backend" in r.getMessage() for r in caplog.records) == 1
    assert not any("no face backend" in r.getMessage() for r in caplog.records)


@needs_mediapipe
def test_real_portrait_state_in_store_units(checkpoints, monkeypatch):
    monkeypatch.setenv("DAWN_FACE_MODEL", str(FACE_MODEL))  # the env var alone turns the backend on
    generator = DawnPipeline.from_config(config(checkpoints))
    assert isinstance(generator.initial_state, FaceInitialState)
    state = generator._initial_state(PORTRAIT, torch.zeros(3, 64, 64))  # analysed at 256 px from the file
    box, pose, blink = state.face_box.numpy(), state.pose.numpy(), state.blink.numpy()
    assert 0.15 < box[0] < box[2] < 0.85 and 0.1 < box[1] < box[3] < 0.95  # a centred head and shoulders
    assert np.abs(pose[:3]).max() < 20  # frontal: yaw, pitch, roll in degrees
    np.testing.assert_allclose(pose[3:], [box[2] - box[0], (box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    assert (blink > 0.6).all()  # eyes open
    if UNCROPPED.is_file():  # a non-square portrait: coordinates are those of the pipeline's centre square
        from dawn_lightning.data.preprocess.face import MediaPipeFaceBackend

        wide = generator._initial_state(UNCROPPED, torch.zeros(3, 64, 64)).face_box.numpy()
        image = np.asarray(Image.open(UNCROPPED).convert("RGB"))
        h, w = image.shape[:2]
        side = min(h, w)
        square = Image.fromarray(image[(h - side) // 2 :][:side, (w - side) // 2 :][:, :side]).resize(
            (256, 256)
        )
        direct = measure_portrait(MediaPipeFaceBackend(FACE_MODEL), np.asarray(square)).face_box
        np.testing.assert_allclose(wide, direct, atol=0.02)


@needs_mediapipe
def test_real_backend_faceless_image_fails_naming_it(checkpoints, inputs, tmp_path):
    out = tmp_path / "talk.mp4"
    cfg = config(
        checkpoints,
        portrait=inputs / "blank.png",
        speech=inputs / "speech.wav",
        out=out,
        **{"face.model_path": FACE_MODEL},
    )
    with pytest.raises(ValueError, match=r"blank\.png: no face found by the face backend"):
        generate(cfg)
    assert not out.exists()


NATIVE_LOG = ("XNNPACK delegate", "Feedback manager", "before InitGoogle")  # MediaPipe's start-up lines


@needs_mediapipe
@pytest.mark.parametrize("verbose", [False, True])
def test_mediapipe_start_up_log_only_with_verbose(checkpoints, inputs, tmp_path, verbose):
    """The installed `dawn-generate` on a real portrait: MediaPipe's native log reaches stderr only with
    verbose=true."""
    script = Path(sys.executable).parent / "dawn-generate"
    settings = [f"checkpoints.{k}={checkpoints[k]}" for k in ("motion", "pose_blink", "diffusion")]
    result = subprocess.run(
        [
            str(script),
            f"portrait={PORTRAIT}",
            f"speech={inputs / 'speech.wav'}",
            f"out={tmp_path / 'talk.mp4'}",
            f"face.model_path={FACE_MODEL}",
            f"verbose={str(verbose).lower()}",
            "sampler.num_steps=2",
            "device=cpu",
            *settings,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    native = [line for line in result.stderr.splitlines() if any(n in line for n in NATIVE_LOG)]
    assert (len(native) >= 3) if verbose else native == [], result.stderr


def test_a_synthetic_only_model_warns_once_about_a_real_portrait(checkpoints, inputs, tmp_path, caplog):
    stage3 = read(checkpoints["diffusion"], AUDIO_TO_MOTION)
    save(
        tmp_path / "synthetic.ckpt",
        AUDIO_TO_MOTION,
        stage3.record | {"store_kind": "synthetic"},
        stage3.weights,
    )
    generator = pipeline(checkpoints | {"diffusion": tmp_path / "synthetic.ckpt"}, sampler={"num_steps": 1})
    Image.fromarray(portrait((200, 160))).save(tmp_path / "photo.png")
    Image.fromarray(portrait((64, 64))).save(tmp_path / "frame.png")
    with caplog.at_level(logging.WARNING, logger="dawn_lightning.pipeline"):
        generator(tmp_path / "frame.png", inputs / "speech.wav")  # a frame of its own size: no word
        assert not any("synthetic 64-px faces only" in r.getMessage() for r in caplog.records)
        for _ in range(2):
            generator(tmp_path / "photo.png", inputs / "speech.wav")
    warnings = [r.getMessage() for r in caplog.records if "synthetic 64-px faces only" in r.getMessage()]
    assert len(warnings) == 1 and "dawn-import-dawn" in warnings[0]
