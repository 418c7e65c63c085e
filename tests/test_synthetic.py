"""Behaviour of the procedural synthetic talking-head generator (audio, motion, blinks, rendering)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dawn_lightning import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from dawn_lightning.data.contact_sheet import write_contact_sheet
from dawn_lightning.data.synthetic import (
    VOWELS,
    SyntheticClip,
    head_pose,
    make_clip,
    render_frames,
    sample_blinks,
    sample_identity,
    synthesize_speech,
)
from dawn_lightning.data.synthetic.face import EYE_WHITE, MOUTH_INTERIOR
from dawn_lightning.data.synthetic.motion import (
    PITCH_LIMIT,
    ROLL_LIMIT,
    SCALE_RANGE,
    TRANSLATION_LIMIT,
    YAW_LIMIT,
)

LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def identity():
    return dataclasses.replace(sample_identity(np.random.default_rng(7)), blink_rate=0.8)


@pytest.fixture(scope="module")
def clip(identity) -> SyntheticClip:
    """About 8 s at 64 px."""
    return make_clip(identity, seed=11, num_frames=200, size=64)


@pytest.fixture(scope="module")
def long_clip(identity) -> SyntheticClip:
    """30 s at 64 px."""
    return make_clip(identity, seed=12, num_frames=30 * FPS, size=64)


def _frame_rms(audio: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(audio.reshape(-1, SAMPLES_PER_FRAME).astype(np.float64) ** 2, axis=1))


def _crop(frame: np.ndarray, box: np.ndarray, margin: int = 1) -> np.ndarray:
    s = frame.shape[0]
    x0, y0 = max(int(box[0] * s) - margin, 0), max(int(box[1] * s) - margin, 0)
    x1, y1 = int(np.ceil(box[2] * s)) + margin, int(np.ceil(box[3] * s)) + margin
    return frame[y0:y1, x0:x1].astype(np.float64) / 255.0


def _darkness(crop: np.ndarray, lip: tuple) -> np.ndarray:
    """Per pixel: 1 for mouth-interior dark, 0 for lip or brighter, linear in between."""
    lo, hi = float(MOUTH_INTERIOR @ LUMA), 0.8 * float(np.asarray(lip) @ LUMA)
    return np.clip((hi - crop @ LUMA) / (hi - lo), 0.0, 1.0)


def _mouth_opening_from_pixels(frames: np.ndarray, boxes: np.ndarray, lip: tuple) -> np.ndarray:
    """(T,) height in pixels of the dark mouth interior: the largest column sum of interior darkness."""
    return np.array(
        [_darkness(_crop(f, b), lip).sum(axis=0).max() for f, b in zip(frames, boxes, strict=True)]
    )


def _segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index runs where ``mask`` is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def test_identity_sampling_is_deterministic_and_varied():
    a = sample_identity(np.random.default_rng(3))
    assert a == sample_identity(np.random.default_rng(3))
    others = [sample_identity(np.random.default_rng(s)) for s in range(8)]
    assert len({o.skin for o in others}) == 8
    assert all(90.0 <= o.f0 <= 250.0 and 0.2 <= o.blink_rate <= 1.0 for o in others)


def test_same_seed_is_bit_identical_and_other_seed_differs(identity):
    a = make_clip(identity, seed=5, num_frames=40, size=64)
    b = make_clip(identity, seed=5, num_frames=40, size=64)
    for field in dataclasses.fields(SyntheticClip):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert x.dtype == y.dtype and np.array_equal(x, y), field.name
    c = make_clip(identity, seed=6, num_frames=40, size=64)
    assert not np.array_equal(a.audio, c.audio)
    assert not np.array_equal(a.pose, c.pose)
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.mouth_open, c.mouth_open)


def test_tracks_have_documented_shapes_dtypes_and_ranges(clip):
    t = 200
    assert clip.frames.shape == (t, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (t * SAMPLES_PER_FRAME,) and clip.audio.dtype == np.float32
    assert np.all(np.isfinite(clip.audio)) and np.abs(clip.audio).max() <= 1.0
    for name, shape in [
        ("pose", (t, 6)),
        ("blink", (t, 2)),
        ("face_box", (t, 4)),
        ("mouth_box", (t, 4)),
        ("mouth_open", (t,)),
    ]:
        track = getattr(clip, name)
        assert track.shape == shape and track.dtype == np.float32, name
        assert np.all(np.isfinite(track)), name
    for name in ("blink", "face_box", "mouth_box", "mouth_open"):
        track = getattr(clip, name)
        assert track.min() >= 0.0 and track.max() <= 1.0, name
    for box in (clip.face_box, clip.mouth_box):
        assert np.all(box[:, 2] > box[:, 0]) and np.all(box[:, 3] > box[:, 1])
    # The mouth lies inside the face, in its lower half.
    face_mid = 0.5 * (clip.face_box[:, 1] + clip.face_box[:, 3])
    assert np.all(clip.mouth_box[:, 0] > clip.face_box[:, 0]) and np.all(
        clip.mouth_box[:, 2] < clip.face_box[:, 2]
    )
    assert np.all(clip.mouth_box[:, 1] > face_mid) and np.all(clip.mouth_box[:, 3] < clip.face_box[:, 3])
    # Speech alternates with pauses, and the mouth is mostly closed in the pauses.
    assert 0.3 < np.mean(clip.mouth_open > 0.1) < 0.95
    rms = _frame_rms(clip.audio)
    assert np.mean(rms < 0.05 * rms.max()) > 0.05


def test_rendered_mouth_opening_follows_the_audio_envelope(clip, identity):
    rms = _frame_rms(clip.audio)
    opening = _mouth_opening_from_pixels(clip.frames, clip.mouth_box, identity.lip)
    r = np.corrcoef(opening, rms)[0, 1]
    assert r > 0.8, r
    assert opening[clip.mouth_open > 0.6].mean() > opening[clip.mouth_open < 0.05].mean() + 2.0  # pixels


def test_speech_pitch_matches_the_speaker(identity):
    audio = make_clip(identity, seed=3, num_frames=100, size=32).audio.astype(np.float64)
    rms = _frame_rms(audio)
    estimates = []
    for i in np.flatnonzero(rms > 0.5 * rms.max()):
        x = audio[i * SAMPLES_PER_FRAME : (i + 1) * SAMPLES_PER_FRAME]
        ac = np.correlate(x, x, mode="full")[len(x) - 1 :]
        lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 60
        estimates.append(SAMPLE_RATE / (lo + np.argmax(ac[lo:hi])))
    f0 = np.median(estimates)
    assert identity.f0 / 1.3 < f0 < identity.f0 * 1.3, (f0, identity.f0)


@pytest.mark.parametrize("rate", [0.2, 0.6, 1.0])
def test_blink_rate_and_duration(rate):
    frames = 30 * FPS
    counts = []
    for seed in range(4):
        blinks = sample_blinks(np.random.default_rng(seed), frames, rate)
        assert blinks.eye_open.shape == (frames, 2) and blinks.eye_open.dtype == np.float32
        assert np.all((blinks.events[:, 1] >= 0.1) & (blinks.events[:, 1] <= 0.3))
        runs = _segments(blinks.eye_open.min(axis=1) < 1.0)
        closed = [run for run in runs if blinks.eye_open[run[0] : run[1]].max(axis=1).min() < 0.5]
        assert len(closed) == len(runs)  # every blink closes both eyes
        for start, stop in runs:
            if 0 < start and stop < frames:  # durations of blinks that are not cut by the track ends
                assert 0.06 <= (stop - start) / FPS <= 0.34
        counts.append(len(runs))
    expected = rate * 30.0
    margin = 3.0 * np.sqrt(expected) + 1.0
    assert all(expected - margin <= n <= expected + margin for n in counts), (counts, rate)


def test_blinks_are_visible_in_pixels(long_clip, identity):
    white = EYE_WHITE.astype(np.float64)
    # Re-render the clip's pose, mouth and eyes to get the eye boxes.
    vowels = np.full((len(long_clip.pose), 5), 0.2)
    result = render_frames(identity, long_clip.pose, long_clip.mouth_open, vowels, long_clip.blink, 64)

    def whiteness(t: int) -> float:
        crops = [_crop(result.frames[t], result.eye_boxes[t, i], margin=0) for i in range(2)]
        return sum(np.clip(1.0 - np.linalg.norm(c - white, axis=-1) / 0.15, 0.0, 1.0).sum() for c in crops)

    closed = np.flatnonzero(long_clip.blink.max(axis=1) < 0.2)
    opened = np.flatnonzero(long_clip.blink.min(axis=1) == 1.0)
    assert len(closed) >= 3 and len(opened) > 100
    closed_white = np.mean([whiteness(t) for t in closed])
    open_white = np.mean([whiteness(t) for t in opened])
    assert open_white > 0.5 and closed_white < 0.25 * open_white, (open_white, closed_white)


def test_pose_ranges_smoothness_and_nods():
    frames = 30 * FPS
    stress = np.zeros(frames, dtype=np.float32)
    stress[np.random.default_rng(0).choice(frames - 20, size=40, replace=False)] = 1.0
    for seed in range(4):
        pose = head_pose(np.random.default_rng(seed), frames, stress, amplitude=1.0)
        assert pose.shape == (frames, 6) and pose.dtype == np.float32
        limits = [YAW_LIMIT, PITCH_LIMIT, ROLL_LIMIT]
        assert all(np.abs(pose[:, i]).max() <= limits[i] for i in range(3))
        assert SCALE_RANGE[0] <= pose[:, 3].min() and pose[:, 3].max() <= SCALE_RANGE[1]
        assert np.abs(pose[:, 4:]).max() <= TRANSLATION_LIMIT
        step = np.abs(np.diff(pose, axis=0)).max(axis=0)
        assert np.all(step[:3] < 2.5) and step[3] < 0.01 and np.all(step[4:] < 0.005), step
        assert np.ptp(pose[:, 0]) > 5.0  # the head does move
    # Nods: the pitch rises in the few frames after a stressed onset (averaged over onsets and seeds).
    rises = []
    for seed in range(4):
        pitch = head_pose(np.random.default_rng(seed), frames, stress, amplitude=1.0)[:, 1]
        rises += [pitch[t + 3 : t + 6].mean() - pitch[t] for t in np.flatnonzero(stress)]
    assert np.mean(rises) > 1.0


def test_face_box_and_pixels_follow_translation(long_clip, identity):
    pose, box = long_clip.pose, long_clip.face_box
    assert np.corrcoef(0.5 * (box[:, 0] + box[:, 2]), pose[:, 4])[0, 1] > 0.99
    assert np.corrcoef(0.5 * (box[:, 1] + box[:, 3]), pose[:, 5])[0, 1] > 0.95
    width = box[:, 2] - box[:, 0]
    assert np.corrcoef(width, pose[:, 3])[0, 1] > 0.5  # scale grows the box
    # Centroid of skin-coloured pixels, measured in the rendered frames.
    frames = long_clip.frames.astype(np.float64) / 255.0
    skin = np.linalg.norm(frames - np.asarray(identity.skin), axis=-1) < 0.12
    cols = np.arange(frames.shape[2]) + 0.5
    centroid = (skin.sum(axis=1) * cols).sum(axis=1) / skin.sum(axis=(1, 2)) / frames.shape[2]
    assert np.corrcoef(centroid, pose[:, 4])[0, 1] > 0.9


def test_vowel_sets_mouth_shape(identity):
    i_col, o_col = VOWELS.index("i"), VOWELS.index("o")
    # Along synthesized speech: the ground-truth lip box is wider, relative to its height, for /i/ than /o/.
    frames = 30 * FPS
    speech = synthesize_speech(np.random.default_rng(0), frames, identity.f0, identity.speaking_rate)
    pose = head_pose(np.random.default_rng(0), frames, speech.stress, identity.head_motion)
    box = render_frames(
        identity, pose, speech.mouth_open, speech.vowel_weights, np.ones((frames, 2)), 16
    ).mouth_box
    aspect = (box[:, 2] - box[:, 0]) / (box[:, 3] - box[:, 1])
    speaking = speech.mouth_open > 0.4
    is_i = speaking & (speech.vowel_weights[:, i_col] > 0.8)
    is_o = speaking & (speech.vowel_weights[:, o_col] > 0.8)
    assert is_i.sum() >= 5 and is_o.sum() >= 5
    assert aspect[is_i].mean() > 1.2 * aspect[is_o].mean()
    # Controlled render at a fixed pose and opening: pure /i/ versus pure /o/, measured in pixels too.
    n = 2
    pose = np.tile(np.array([0, 0, 0, 1, 0, 0], np.float32), (2 * n, 1))
    weights = np.zeros((2 * n, 5), np.float32)
    weights[:n, i_col] = 1.0
    weights[n:, o_col] = 1.0
    result = render_frames(identity, pose, np.full(2 * n, 0.6), weights, np.ones((2 * n, 2)), 128)
    box = result.mouth_box
    gt_aspect = (box[:, 2] - box[:, 0]) / (box[:, 3] - box[:, 1])
    assert gt_aspect[:n].mean() > 1.3 * gt_aspect[n:].mean()
    dark = [_darkness(_crop(f, b), identity.lip) > 0.5 for f, b in zip(result.frames, box, strict=True)]
    pixel_aspect = np.array([np.ptp(np.nonzero(d)[1]) / np.ptp(np.nonzero(d)[0]) for d in dark])
    assert pixel_aspect[:n].mean() > 1.3 * pixel_aspect[n:].mean(), pixel_aspect


def test_contact_sheet_writes_a_png_grid(tmp_path: Path, clip):
    path = write_contact_sheet(
        clip.frames[:10], tmp_path / "sheet.png", columns=4, labels=[str(i) for i in range(10)]
    )
    image = Image.open(path)
    assert image.size[0] == 4 * 66 + 2 and image.size[1] >= 3 * 66
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]
    with pytest.raises(ValueError):
        write_contact_sheet(clip.frames[:3].astype(np.float32), tmp_path / "bad.png")
