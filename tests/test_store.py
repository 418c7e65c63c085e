import os
import shutil

import numpy as np
import pytest
import soundfile

from dawn_lightning.cli.store import main as store_cli
from dawn_lightning.data.store import ClipStore, StoreError
from dawn_lightning.data.validate import validate_store
from dawn_lightning.data.video_io import write_mp4
from tests.conftest import make_writer, simple_clip


@pytest.mark.parametrize("frames_format", ["mp4", "npy"])
def test_round_trip(tmp_path, frames_format):
    writer = make_writer(tmp_path, frames_format)
    clips = [simple_clip("x", 40, "train", seed=1), simple_clip("y", 26, "val", seed=2)]
    for clip in clips:
        writer.write(clip)
    index = writer.finalize()
    assert index["splits"] == {"train": 1, "val": 1, "test": 0}
    assert index["total_frames"] == 66 and index["signals"]["audio_features"] == 8
    assert index["fps"] == 25 and index["sample_rate"] == 16000 and len(index["config_hash"]) == 16

    store = ClipStore(tmp_path)
    assert [c.clip_id for c in store.clips] == ["x", "y"] and store.audio_dim == 8
    for clip in clips:
        (info,) = [c for c in store.clips if c.clip_id == clip.clip_id]
        reader = store.reader(info)
        picks = [info.num_frames - 1, 0, 7, 3]
        frames = reader.frames(picks)
        assert frames.dtype == np.uint8 and frames.shape == (4, 32, 32, 3)
        error = np.abs(frames.astype(int) - clip.frames[picks].astype(int)).mean()
        assert error == 0 if frames_format == "npy" else error < 3
        for name, values in clip.signals.items():
            np.testing.assert_array_equal(reader.signals[name], values)
        np.testing.assert_array_equal(reader.audio(), clip.audio)
    assert validate_store(tmp_path) == []


def test_resume_skips_complete_clips_and_refuses_another_config(tmp_path):
    writer = make_writer(tmp_path)
    writer.write(simple_clip("x", 10))
    again = make_writer(tmp_path)
    assert again.has("x") and not again.has("y")
    with pytest.raises(StoreError, match="another config"):
        make_writer(tmp_path, config={"kind": "other"})


def test_a_write_killed_midway_leaves_no_clip(tmp_path, monkeypatch):
    writer = make_writer(tmp_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("dawn_lightning.data.store_writer._write_wav", crash)
    with pytest.raises(KeyboardInterrupt):
        writer.write(simple_clip("x", 10))
    assert not writer.has("x")
    assert os.listdir(tmp_path / "clips") == []
    assert writer.finalize()["num_clips"] == 0


def test_failures_are_recorded_and_cleared_by_a_later_success(tmp_path):
    writer = make_writer(tmp_path)
    writer.fail("x", "no face found")
    assert writer.finalize()["failed"] == [{"clip_id": "x", "reason": "no face found"}]
    writer.write(simple_clip("x", 10))
    assert writer.finalize()["failed"] == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: setattr(c, "audio", c.audio[:-1]), "audio samples"),
        (lambda c: c.signals.update(pose=c.signals["pose"][:-1]), "signal 'pose' has shape"),
        (lambda c: c.signals.pop("blink"), "signal 'blink' missing"),
        (lambda c: setattr(c, "split", "training"), "split must be one of"),
        (lambda c: setattr(c, "frames", c.frames[:, :16]), "frames must be uint8"),
    ],
)
def test_writer_rejects_inconsistent_clips(tmp_path, mutate, message):
    clip = simple_clip("bad", 10)
    mutate(clip)
    with pytest.raises(StoreError, match=message):
        make_writer(tmp_path).write(clip)


def _problems(store):
    return [str(p) for p in validate_store(store)]


def test_validator_names_missing_file(tiny_store):
    (tiny_store / "clips/a/audio.wav").unlink()
    (problem,) = _problems(tiny_store)
    assert problem.startswith("a: ") and "clips/a/audio.wav: missing" in problem


def test_validator_names_frame_feature_length_mismatch(tiny_store):
    path = tiny_store / "clips/b/signals.npz"
    with np.load(path) as archive:
        signals = {k: archive[k] for k in archive.files}
    signals["audio_features"] = signals["audio_features"][:-3]
    np.savez(path, **signals)
    (problem,) = _problems(tiny_store)
    assert (
        problem.startswith("b: ") and "'audio_features' has shape (42, 8), the index says (45, 8)" in problem
    )


def test_validator_names_nan(tiny_store):
    path = tiny_store / "clips/c/signals.npz"
    with np.load(path) as archive:
        signals = {k: archive[k] for k in archive.files}
    signals["pose"][5, 2] = np.nan
    np.savez(path, **signals)
    (problem,) = _problems(tiny_store)
    assert "c: " in problem and "'pose' has NaN/inf at 1 frames (first: frame 5)" in problem


def test_validator_names_wrong_fps(tiny_store):
    frames = ClipStore(tiny_store).reader(ClipStore(tiny_store).clips[0]).frames(range(30))
    write_mp4(tiny_store / "clips/a/frames.mp4", frames, fps=30)
    (problem,) = _problems(tiny_store)
    assert problem.startswith("a: ") and "30 fps, the store needs 25" in problem


def test_validator_names_truncated_mp4(tiny_store):
    path = tiny_store / "clips/b/frames.mp4"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    problems = _problems(tiny_store)
    assert problems and all(p.startswith("b: ") and "frames.mp4" in p for p in problems)
    # fast mode skips decoding, so it does not see it
    assert validate_store(tiny_store, decode=False) == []


def test_validator_names_wrong_audio_rate_and_length(tiny_store):
    soundfile.write(tiny_store / "clips/v/audio.wav", np.zeros(100, np.float32), 8000)
    rate, length = _problems(tiny_store)
    assert rate.startswith("v: ") and "8000 Hz, 1 channels; need 16000 Hz mono" in rate
    assert length.startswith("v: ") and "100 samples, 25 frames need 16000" in length


def test_validator_store_level_problems(tmp_path, tiny_store):
    assert "clip store not found" in _problems(tmp_path / "nowhere")[0]
    (tiny_store / "clips/zz").mkdir()
    assert any("zz: clip folder exists but is not in the index" in p for p in _problems(tiny_store))
    shutil.rmtree(tiny_store / "clips/t")  # a clip the index lists, gone
    assert any(p.startswith("t: ") and "missing" in p for p in _problems(tiny_store))
    (tiny_store / "index.json").write_text("{")
    assert "not valid JSON" in _problems(tiny_store)[0]
    empty = make_writer(tmp_path / "empty")
    empty.finalize()
    assert _problems(tmp_path / "empty") == ["store: the index lists no clips"]


def test_store_cli(tiny_store, capsys):
    assert store_cli(["validate", str(tiny_store)]) == 0
    assert store_cli(["info", str(tiny_store)]) == 0
    (tiny_store / "clips/a/signals.npz").unlink()
    assert store_cli(["validate", str(tiny_store)]) == 1
    assert "signals.npz: missing" in capsys.readouterr().out
