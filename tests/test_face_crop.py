"""LSE's face crop as syncnet_python's run_pipeline makes it: tracking, interpolation, size limits, the crop's
geometry, and a real uncropped 700-px clip scored through `dawn-evaluate` with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dawn_lightning.checkpoints import SYNCNET, net_state, save
from dawn_lightning.config import compose
from dawn_lightning.evaluation import face_detector, read_mp4
from dawn_lightning.metrics.face_crop import CropSettings, crop_track, face_crop, iou, track_faces
from dawn_lightning.metrics.lse import sync_scores
from dawn_lightning.metrics.suite import EvaluationSuite
from dawn_lightning.models.syncnet import CompactSyncNet
from tests.preprocess_videos import FACE_MODEL, REAL, have_mediapipe

SMALL = CropSettings(min_track=5, min_face_size=10)
CLIP = REAL / "video-retalking" / "examples" / "face" / "1.mp4"  # 700 x 700, variable frame rate, in sync


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_tracks_bridge_short_gaps_split_at_long_ones_and_drop_small_faces():
    box = (100.0, 100.0, 160.0, 160.0)
    detections = [[box] for _ in range(10)] + [[] for _ in range(3)] + [[box] for _ in range(10)]
    (track,) = track_faces(detections, SMALL)
    assert track.frames.tolist() == list(range(23))  # the 3-frame gap is interpolated
    np.testing.assert_allclose(track.boxes[11], box)
    gap = [[box] for _ in range(10)] + [[] for _ in range(30)] + [[box] for _ in range(10)]
    assert [t.frames[[0, -1]].tolist() for t in track_faces(gap, SMALL)] == [[0, 9], [40, 49]]
    moved = [[box] for _ in range(10)] + [[(300.0, 300.0, 360.0, 360.0)] for _ in range(10)]
    assert len(track_faces(moved, SMALL)) == 2  # no overlap: another face, another track
    assert track_faces([[box] for _ in range(5)], SMALL) == []  # not longer than min_track
    tiny = [[(0.0, 0.0, 8.0, 8.0)] for _ in range(10)]
    assert track_faces(tiny, SMALL) == []  # smaller than min_face_size


def test_the_crop_starts_at_the_box_top_and_keeps_margins_of_the_crop_scale():
    """A white square face 60 px wide in the middle of a black frame: the crop starts at the box's top,
    reaches 0.4 of the box below it, and 0.2 of the box on each side."""
    frame = np.zeros((300, 300, 3), np.uint8)
    frame[100:160, 120:180] = 255
    detections = [[(120.0, 100.0, 180.0, 160.0)] for _ in range(8)]
    (track,) = track_faces(detections, SMALL)
    crops = crop_track(np.repeat(frame[None], 8, 0), track, SMALL)
    assert crops.shape == (8, 224, 224, 3)
    white = crops[0, :, :, 0] > 128
    rows, cols = np.nonzero(white.any(1))[0], np.nonzero(white.any(0))[0]
    # the crop is 60 * 1.4 px square: rows from the box's top, columns with the box centred
    assert rows[0] == 0 and abs(rows[-1] + 1 - 224 / 1.4) <= 1
    assert abs(cols[0] - 224 * 0.2 / 1.4) <= 1 and abs(cols[-1] + 1 - 224 * 1.2 / 1.4) <= 1


def test_a_face_at_the_border_is_padded_grey_and_the_speech_follows_the_track():
    frame = np.zeros((120, 120, 3), np.uint8)
    frames = np.repeat(frame[None], 10, 0)
    boxes = [None, None] + [(0.0, 0.0, 40.0, 40.0)] * 8  # the face appears at frame 2, in the corner
    audio = np.arange(10 * 640, dtype=np.float32)
    crops, speech = face_crop(frames, audio, lambda video: boxes, CropSettings(min_track=5, min_face_size=10))
    assert len(crops) == 8 and crops[0, 0, 0].tolist() == [110, 110, 110]  # outside the frame: grey
    np.testing.assert_array_equal(speech, audio[2 * 640 :])
    assert face_crop(frames, audio, lambda video: [None] * 10, SMALL) is None


def test_the_suite_scores_lse_on_face_crops_and_notes_videos_without_a_face(tmp_path):
    torch.manual_seed(0)
    net = CompactSyncNet(dim=8, width=4, crop_size=16)
    save(tmp_path / "syncnet.ckpt", SYNCNET, {"config": net.config}, net_state(net))
    overrides = [f"metrics.lse.weights={tmp_path / 'syncnet.ckpt'}", "metrics.lse.face_crop=true"]
    overrides += ["metrics.lse.crop.min_track=5", "metrics.lse.crop.min_face_size=10"]
    overrides += ["metrics.fid.random_dim=8", "metrics.fvd.random_dim=4", "metrics.fvd.clip_lengths=[16]"]
    settings = OmegaConf.to_container(compose("evaluate", overrides), resolve=True)["metrics"]
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (30, 96, 96, 3), dtype=np.uint8)
    audio = rng.standard_normal(30 * 640).astype(np.float32) * 0.1
    with pytest.raises(ValueError, match="face_crop needs a face detector"):
        EvaluationSuite(settings)
    seen = []

    def detect(frames):
        seen.append(frames.shape)
        return [(20.0, 20.0, 76.0, 76.0)] * len(frames) if len(seen) <= 3 else [None] * len(frames)

    suite = EvaluationSuite(settings, detect=detect)
    suite.add_video(video, video, audio, control_audio=audio[::-1].copy())  # three sides: three crops
    suite.add_video(video, video, audio)  # no face found: left out, and said
    results = suite.results()
    assert seen[0] == (30, 96, 96, 3) and len(seen) == 5
    assert "face crop" in results["lse_d_truth"]["label"] and np.isfinite(results["lse_d_control"]["value"])
    assert any("2 video(s) left out" in note for note in suite.notes)


@pytest.mark.skipif(
    not have_mediapipe() or not CLIP.is_file(),
    reason="needs mediapipe (the `face` extra), ../shared/models/face_landmarker.task and ../shared/realdata",
)
def test_a_real_uncropped_700px_clip_gives_a_face_track_and_its_lse():
    """The 700-px clip (variable frame rate, resampled to 25 fps): MediaPipe's boxes give one track of
    nearly every frame, whose 224-px crops and cut speech SyncNet scores."""
    frames, audio = read_mp4(CLIP)
    assert frames.shape[1:] == (700, 700, 3) and len(audio) == len(frames) * 640
    detect = face_detector({"metrics": {"lse": {"face_crop": True}}, "face": {"model_path": str(FACE_MODEL)}})
    crops, speech = face_crop(frames, audio, detect)
    assert crops.shape[1:] == (224, 224, 3) and len(crops) >= len(frames) - 5
    assert len(speech) == len(crops) * 640
    torch.manual_seed(0)
    offset, distance, confidence = sync_scores(
        CompactSyncNet(dim=8, width=4, crop_size=16).eval(), crops, speech
    )
    assert abs(offset) <= 15 and np.isfinite(distance) and np.isfinite(confidence)
