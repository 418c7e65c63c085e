"""Preprocessing parts without a face model: clips and crops, layouts and splits, signals, HuBERT."""

from __future__ import annotations

import numpy as np
import pytest

from dawn_lightning.data.preprocess.crop import ClipPlan, crop_resize, plan_clips, scene_cuts
from dawn_lightning.data.preprocess.face import FrameFace
from dawn_lightning.data.preprocess.layout import assign_splits, find_videos
from dawn_lightning.data.preprocess.signals import FaceTrack, clip_signals


def steady_boxes(count: int, x: float = 100.0, size: float = 50.0) -> np.ndarray:
    return np.tile(np.array([x, 80, x + size, 80 + size], np.float32), (count, 1))


def test_plan_splits_at_missing_faces_cuts_and_moves_and_drops_short_clips():
    boxes = steady_boxes(200)
    boxes[150:] += [200, 0, 200, 0]  # the face jumps far out of the crop: split
    cuts = np.zeros(200, bool)
    cuts[100] = True  # a scene cut: split
    boxes[60:70] = np.nan  # no face: split
    boxes[190:] = np.nan
    plans, dropped = plan_clips(boxes, cuts, margin=0.3, min_frames=25, max_frames=1000, smooth_frames=1)
    assert [(p.start, p.stop) for p in plans] == [(0, 60), (70, 100), (100, 150), (150, 190)]
    assert dropped == 0
    side = 1.6 * 50
    np.testing.assert_allclose(plans[0].crop, (125 - side / 2, 105 - side / 2, side), atol=1e-3)
    short, dropped = plan_clips(steady_boxes(20), np.zeros(20, bool), 0.3, 25, 1000)
    assert short == [] and dropped == 1
    capped, _ = plan_clips(steady_boxes(100), np.zeros(100, bool), 0.3, 25, max_frames=40)
    assert [p.num_frames for p in capped] == [40, 40]  # and the 20-frame rest is dropped


def test_slow_drift_stays_in_one_clip_whose_crop_holds_every_face():
    boxes = steady_boxes(100)
    boxes[:, [0, 2]] += np.linspace(0, 20, 100)[:, None]  # 20 px drift of a 50 px face
    plans, _ = plan_clips(boxes, np.zeros(100, bool), margin=0.3, min_frames=25, max_frames=1000)
    assert len(plans) == 1
    x0, y0, side = plans[0].crop
    assert (boxes[:, 0] >= x0 - 1).all() and (boxes[:, 2] <= x0 + side + 1).all()


def test_scene_cuts_and_crop_resize_pads_outside_the_frame():
    thumbs = np.zeros((6, 8, 8), np.float32)
    thumbs[3:] = 200
    np.testing.assert_array_equal(scene_cuts(thumbs, 30.0), [0, 0, 0, 1, 0, 0])
    frames = np.zeros((2, 40, 60, 3), np.uint8)
    frames[:, :, :10] = 255  # a white left edge
    out = crop_resize(frames, (-20, 0, 40), 20)  # 20 px beyond the left edge: edge pixels repeated (white)
    assert out.shape == (2, 20, 20, 3) and out[:, :, :14].min() == 255 and out[:, :, 16:].max() < 5


def test_signals_are_in_crop_coordinates():
    face = FrameFace(
        box=np.array([110, 120, 150, 170], np.float32),
        landmarks=np.array([[110, 120], [150, 170]], np.float32),
        pose=np.array([5, -3, 2, 0.2, 0.5, 0.5], np.float32),
        rotation=np.eye(3, dtype=np.float32),
        eyes=np.array([0.9, 0.8], np.float32),
        mouth_box=np.array([120, 150, 140, 160], np.float32),
    )
    track = FaceTrack.from_faces([face] * 10 + [None], num_landmarks=2)
    signals = clip_signals(track, ClipPlan(0, 10, (100.0, 100.0, 100.0)))
    np.testing.assert_allclose(signals["face_box"][0], [0.1, 0.2, 0.5, 0.7], atol=1e-6)
    np.testing.assert_allclose(signals["mouth_box"][0], [0.2, 0.5, 0.4, 0.6], atol=1e-6)
    np.testing.assert_allclose(signals["pose"][0], [5, -3, 2, 0.4, 0.3, 0.45], atol=1e-5)
    np.testing.assert_allclose(signals["blink"][0], [0.9, 0.8])
    assert signals["landmarks"].shape == (10, 4)
    assert np.isnan(track.box[10]).all()


def test_layouts_give_video_ids_and_speakers(tmp_path):
    for name in ("WRA_MarcoRubio_000.mp4", "WRA_MarcoRubio_001.mp4", "RD_Radio10_000.mp4", "notes.txt"):
        (tmp_path / "hdtf" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "hdtf" / name).touch()
    found = find_videos(tmp_path / "hdtf", "hdtf", ["mp4"])
    assert [(v, s) for _, v, s in found] == [
        ("RD_Radio10_000", "RD_Radio10"),
        ("WRA_MarcoRubio_000", "WRA_MarcoRubio"),
        ("WRA_MarcoRubio_001", "WRA_MarcoRubio"),
    ]
    (tmp_path / "vox" / "id00012" / "abc").mkdir(parents=True)
    (tmp_path / "vox" / "id00012" / "abc" / "00001.mp4").touch()
    assert [(v, s) for _, v, s in find_videos(tmp_path / "vox", "voxceleb", ["mp4"])] == [
        ("id00012_abc_00001", "id00012")
    ]
    (tmp_path / "any" / "talks").mkdir(parents=True)
    (tmp_path / "any" / "talks" / "a b.MOV").touch()
    (tmp_path / "any" / "c.mkv").touch()
    assert [(v, s) for _, v, s in find_videos(tmp_path / "any", "generic", ["mov", "mkv"])] == [
        ("c", "c"),
        ("talks_a-b", "talks"),
    ]
    with pytest.raises(ValueError, match="preprocess.layout"):
        find_videos(tmp_path, "lrs3", ["mp4"])


def test_splits_are_by_speaker_seeded_and_from_lists(tmp_path):
    speakers = [f"s{i:02d}" for i in range(20)]
    one = assign_splits(speakers, seed=1, val=0.1, test=0.2, lists={})
    assert one == assign_splits(speakers, seed=1, val=0.1, test=0.2, lists={})
    assert sorted(one.values()).count("val") == 2 and list(one.values()).count("test") == 4
    assert one != assign_splits(speakers, seed=2, val=0.1, test=0.2, lists={})
    assert set(assign_splits(speakers[:3], 0, 0.1, 0.1, {}).values()) == {"train", "val", "test"}
    listed = tmp_path / "test_speakers.txt"
    listed.write_text("s03\ns07\n")
    chosen = assign_splits(speakers, 0, 0.0, 0.0, {"test": str(listed)})
    assert {s for s, split in chosen.items() if split == "test"} == {"s03", "s07"}


def test_hubert_features_from_a_local_tiny_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    from dawn_lightning.data.speech_encoders import HubertFeatures

    config = transformers.HubertConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8, 8, 8, 8, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    transformers.HubertModel(config).save_pretrained(tmp_path / "tiny-hubert")
    features = HubertFeatures(str(tmp_path / "tiny-hubert"))
    assert features.dim == 16 and features.spec["kind"] == "hubert"
    audio = np.random.default_rng(0).standard_normal(16_000 * 2).astype(np.float32) * 0.1
    out = features(audio, 50)
    assert out.shape == (50, 16) and out.dtype == np.float32 and np.isfinite(out).all()
    assert out.std(axis=0).mean() > 0
    with pytest.raises(FileNotFoundError, match="audio_features.model_path"):
        HubertFeatures(None)
    with pytest.raises(FileNotFoundError, match="config.json"):
        HubertFeatures(str(tmp_path))
