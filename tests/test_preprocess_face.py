"""The MediaPipe face backend on real faces (skipped without `mediapipe` or the model file), and the whole
preprocessing of real talking-head clips from ../shared/realdata (skipped when the folder is absent)."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from dawn_lightning.data.audio_features import LogMelFeatures
from dawn_lightning.data.preprocess.decode import open_video
from dawn_lightning.data.preprocess.face import MODEL_URL, resolve_model_path
from dawn_lightning.data.preprocess.run import preprocess
from dawn_lightning.data.store import ClipStore
from dawn_lightning.data.validate import validate_store
from tests.preprocess_videos import FACE_MODEL, REAL, have_mediapipe, settings, store_config, write_video

needs_face = pytest.mark.skipif(
    not have_mediapipe(), reason="needs mediapipe (the `face` extra) and the model"
)
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} (real clips) absent")
PORTRAIT = REAL / "float" / "assets" / "sam_altman_512x512.jpg"
BLINK_CLIP = REAL / "LipNet" / "evaluation" / "samples" / "GRID" / "brbk7n.mpg"  # a blink at frames 9-11


def test_missing_model_names_the_setting_and_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv("DAWN_FACE_MODEL", raising=False)
    with pytest.raises(FileNotFoundError, match="face.model_path") as error:
        resolve_model_path(None)
    assert MODEL_URL in str(error.value)
    with pytest.raises(FileNotFoundError, match="nowhere.task: face model not found"):
        resolve_model_path(tmp_path / "nowhere.task")
    model = tmp_path / "face_landmarker.task"  # the env var is read when no setting is given
    model.write_bytes(b"model")
    monkeypatch.setenv("DAWN_FACE_MODEL", str(model))
    assert resolve_model_path(None) == model


@needs_face
def test_backend_ignores_the_profiler_ticks_of_libmediapipe():
    """libmediapipe's CPU profiler arms SIGPROF timers that outlive it: with the default disposition they
    killed the test suite minutes later ("Profiling timer expired"). A fresh process checks the setting."""
    script = (
        "import signal, sys\n"
        "from dawn_lightning.data.preprocess.face import MediaPipeFaceBackend\n"
        "signal.signal(signal.SIGPROF, signal.SIG_DFL)  # an ignored signal is inherited from this process\n"
        f"MediaPipeFaceBackend({str(FACE_MODEL)!r})\n"
        "sys.exit(0 if signal.getsignal(signal.SIGPROF) == signal.SIG_IGN else 3)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 0


@needs_face
@needs_real
def test_roll_tracks_a_known_rotation_of_a_real_portrait():
    from dawn_lightning.data.preprocess.face import MediaPipeFaceBackend

    backend = MediaPipeFaceBackend(FACE_MODEL)
    portrait = Image.open(PORTRAIT).convert("RGB")
    angles = 20 * np.sin(np.linspace(0, 2 * np.pi, 40))  # degrees, counter-clockwise on screen
    faces = [
        backend.analyze(np.asarray(portrait.rotate(a, Image.BILINEAR, fillcolor=(128, 128, 128))), 40 * i)
        for i, a in enumerate(angles)
    ]
    backend.reset()
    roll = np.array([f.pose[2] for f in faces])
    error = roll + angles - (roll + angles).mean()  # roll > 0 is clockwise; the portrait's own roll cancels
    assert np.sqrt(np.mean(error**2)) < 2.0 and np.abs(error).max() < 4.0
    rotation = faces[10].rotation
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-3)


@needs_face
@needs_real
def test_eye_openness_drops_on_a_real_blink():
    from dawn_lightning.data.preprocess.face import MediaPipeFaceBackend

    backend = MediaPipeFaceBackend(FACE_MODEL)
    source = open_video(BLINK_CLIP)
    eyes = np.array([backend.analyze(f, 40 * i).eyes for i, f in enumerate(source.frames(0, 20))])
    backend.reset()
    openness = eyes.mean(axis=1)
    assert openness[9:12].min() < 0.5 * np.median(openness[:8])
    assert openness[:8].min() > 0.8 and openness[15:].min() > 0.7


@needs_face
@needs_real
def test_real_clips_make_a_valid_store_and_a_faceless_video_is_skipped(tmp_path):
    videos = tmp_path / "videos"
    for name, source in {
        "grid": BLINK_CLIP,
        "lrs2": REAL / "deep_avsr" / "audio" / "demo" / "00001.mp4",
        "hdtf": REAL / "V-Express" / "scripts" / "prepare_dataset" / "RD_Radio10_0_clip_0.mp4",
    }.items():
        (videos / name).mkdir(parents=True)
        (videos / name / source.name).symlink_to(source)  # linked, never copied
    noise = np.random.default_rng(0).integers(0, 255, (30, 64, 64, 3), dtype=np.uint8)
    write_video(videos / "noise" / "noise.mp4", noise, Fraction(25), np.zeros(44_100, np.float32))
    chosen, features = settings(size=64), LogMelFeatures(n_mels=16)
    summary = preprocess(
        videos, tmp_path / "store", store_config(chosen, features), features, chosen, progress=False
    )
    assert {r.path.split("/")[-1]: r.status for r in summary.results} == {
        "brbk7n.mpg": "done",
        "00001.mp4": "done",
        "RD_Radio10_0_clip_0.mp4": "done",
        "noise.mp4": "skipped",
    }
    assert validate_store(tmp_path / "store") == []
    store = ClipStore(tmp_path / "store")
    assert [c.num_frames for c in store.clips] == [75, 53, 120]  # 3 s at 25, 2.1 s at 29.97, 4.8 s at 25
    for info in store.clips:
        signals = store.reader(info).signals
        assert signals["landmarks"].shape == (info.num_frames, 478 * 2)
        face = signals["face_box"]
        assert (face[:, :2] > -0.05).all() and (face[:, 2:] < 1.05).all()  # the face stays in the crop
        mouth = signals["mouth_box"]
        assert (
            (mouth[:, 1] > face[:, 1] + 0.4 * (face[:, 3] - face[:, 1])) & (mouth[:, 3] <= face[:, 3])
        ).all()
    blink = store.reader(store.clips[0]).signals["blink"].mean(axis=1)  # the GRID clip
    assert blink[9:12].min() < 0.5 * np.median(blink)
