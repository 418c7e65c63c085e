"""Inference pipeline: speech and portrait loading, the audio-feature spec, and `DawnPipeline` on tiny random
stage checkpoints (plumbing: lengths, seeds, user pose/blink, chunking, precision, checkpoint checks)."""

import os
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from dawn_lightning.checkpoints import default_checkpoints
from dawn_lightning.data.audio_features import LogMelFeatures, features_from_spec
from dawn_lightning.data.portrait import PortraitError, load_portrait, read_image
from dawn_lightning.data.speech import SpeechError, load_speech
from dawn_lightning.models.audio_to_motion.temporal_attention import TemporalAttention
from dawn_lightning.pipeline import DawnPipeline, chunk_bounds, load_pose_blink
from tests.pipeline_fixtures import BAD_AUDIO, bad_audio, portrait, speech, write_wav

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(scope="module")
def pipeline(checkpoints, one_thread):
    return DawnPipeline.from_checkpoints(
        checkpoints["motion"], checkpoints["pose_blink"], checkpoints["diffusion"], sampler={"num_steps": 2}
    )


# -- speech -------------------------------------------------------------------------------------------------
def _write_m4a(path: Path, audio: np.ndarray, rate: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg", "mp3", "m4a"])
def test_speech_files_of_any_format_rate_and_channels_become_16k_mono(tmp_path, suffix):
    rate, channels = (44_100, 2) if suffix in ("wav", "flac") else (22_050, 1)
    audio = speech(1.5, rate, channels)
    path = tmp_path / f"speech.{suffix}"
    if suffix == "m4a":
        _write_m4a(path, audio[0], rate)
    else:
        soundfile.write(str(path), audio.T, rate)
    loaded = load_speech(path)
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    # codecs add priming/padding of a few tens of ms; the length is that of 1.5 s at 16 kHz
    assert abs(len(loaded) - 24_000) < 0.1 * 16_000
    expected = speech(1.5)[0] * (0.9 if channels == 2 else 1.0)  # the channels' mean
    if suffix in ("wav", "flac"):  # lossless: the resampled waveform itself
        assert np.corrcoef(loaded[:24_000], expected[: len(loaded)])[0, 1] > 0.95
    assert 0.05 < np.abs(loaded).max() < 1.0


def test_speech_arrays_are_taken_as_16k_and_tensors_accepted():
    audio = speech(0.5)[0]
    np.testing.assert_array_equal(load_speech(audio), audio)
    np.testing.assert_array_equal(load_speech(torch.from_numpy(audio)), audio)
    assert len(load_speech(speech(0.5, 8000, 2), sample_rate=8000)) == 8000


@pytest.mark.parametrize("kind", BAD_AUDIO)
def test_bad_speech_files_raise_errors_naming_the_file(tmp_path, kind):
    path, message = bad_audio(tmp_path, kind)
    with pytest.raises((SpeechError, FileNotFoundError)) as error:
        load_speech(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_bad_speech_arrays():
    for audio, message in [
        (np.zeros(0), "empty"),
        (np.full(1000, np.nan), "non-finite"),
        (np.zeros(16_000), "silent"),
        (np.ones(100), "shorter"),
    ]:
        with pytest.raises(SpeechError, match=message):
            load_speech(audio)


# -- portrait -----------------------------------------------------------------------------------------------
def test_portrait_transparency_greyscale_and_framing(tmp_path):
    rgba = portrait((60, 100), channels=4)  # transparent outside the face ellipse
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    white = load_portrait(tmp_path / "rgba.png", 32, "crop", "white")
    black = load_portrait(tmp_path / "rgba.png", 32, "crop", "black")
    assert white.shape == (3, 32, 32) and white.dtype == torch.float32
    assert white[:, 0, 0].min() > 0.99 and black[:, 0, 0].max() < 0.01  # corners: background
    torch.testing.assert_close(white[:, 16, 16], black[:, 16, 16])  # the opaque face is unchanged
    # "pad" keeps the whole 100-wide image: the 60 rows land in the middle 19 of 32 rows, background above
    padded = load_portrait(portrait((60, 100)), 32, "pad", "black")
    assert padded[:, :5].max() < 0.01 and padded[:, 10:22].mean() > 0.2
    # "crop" fills the frame with the centred 60 x 60 square
    assert load_portrait(portrait((60, 100)), 32, "crop")[:, :5].mean() > 0.2
    grey = Image.fromarray(portrait()).convert("L")
    grey.save(tmp_path / "grey.jpg")
    loaded = load_portrait(tmp_path / "grey.jpg", 40)
    assert loaded.shape == (3, 40, 40)
    torch.testing.assert_close(loaded[0], loaded[2])
    deep = Image.fromarray((np.asarray(grey, np.uint16) * 257).astype(np.uint16))
    deep.save(tmp_path / "grey16.png")
    torch.testing.assert_close(load_portrait(tmp_path / "grey16.png", 40), loaded, atol=0.02, rtol=0)
    tensor = torch.from_numpy(portrait()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(load_portrait(tensor, 40), load_portrait(portrait(), 40))


def test_unreadable_portraits_raise_errors_naming_the_file(tmp_path):
    broken = tmp_path / "face.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    for path, error in [(broken, PortraitError), (tmp_path / "absent.jpg", FileNotFoundError)]:
        with pytest.raises(error, match=str(path)):
            read_image(path)
    with pytest.raises(PortraitError, match="in \\[0, 1\\]"):
        load_portrait(np.full((8, 8, 3), 2.0), 16)


# -- audio features -----------------------------------------------------------------------------------------
def test_features_from_spec_rebuilds_the_extractor_and_refuses_unknown_kinds():
    spec = LogMelFeatures(n_mels=40, fmin=30.0).spec
    assert features_from_spec(spec) == LogMelFeatures(n_mels=40, fmin=30.0)
    with pytest.raises(FileNotFoundError, match="HuBERT features .*audio_features.model_path"):
        features_from_spec({"kind": "hubert", "dim": 1024})  # no folder given or recorded
    with pytest.raises(ValueError, match="'mfcc' are not supported"):
        features_from_spec({"kind": "mfcc", "dim": 13})
    with pytest.raises(ValueError, match="cannot be reproduced"):
        features_from_spec(spec | {"dim": 12})


# -- the pipeline -------------------------------------------------------------------------------------------
def test_lengths_follow_the_audio_and_one_seed_reproduces_the_video(pipeline):
    audio = speech(1.23)[0]  # 19680 samples: 30 frames, 480 samples cut
    video = pipeline(portrait(), audio, seed=5)
    assert video.frames.shape == (30, 64, 64, 3) and video.frames.dtype == np.uint8
    assert video.audio.shape == (30 * 640,) and video.fps == 25
    assert video.pose.shape == (30, 6) and video.blink.shape == (30, 2)
    np.testing.assert_array_equal(video.audio, audio[: 30 * 640])
    again = pipeline(portrait(), audio, seed=5)
    np.testing.assert_array_equal(again.frames, video.frames)
    np.testing.assert_array_equal(again.pose, video.pose)
    other = pipeline(portrait(), audio, seed=6)
    assert np.abs(other.frames.astype(int) - video.frames).mean() > 0.5
    assert not np.allclose(other.pose, video.pose)
    assert np.abs(video.frames[1:].astype(int) - video.frames[:-1]).mean() > 0  # the frames move


def test_user_pose_and_blink_drive_the_video(pipeline, tmp_path):
    audio = speech(0.8)[0]  # 20 frames
    t = np.linspace(0, 2 * np.pi, 20, dtype=np.float32)[:, None]
    calm = np.zeros((20, 8), np.float32) + [2, -1, 0, 1, 0, 0, 0.3, 0.3]
    nodding = calm + np.sin(t) * [0, 12, 0, 0, 0, 0, 0, 0]
    np.save(tmp_path / "calm.npy", calm)
    np.savez(tmp_path / "nodding.npz", pose=nodding[:, :6], blink=nodding[:, 6:])
    a = pipeline(portrait(), audio, seed=1, pose_blink=tmp_path / "calm.npy")
    b = pipeline(portrait(), audio, seed=1, pose_blink=tmp_path / "nodding.npz")
    np.testing.assert_allclose(a.pose, calm[:, :6])
    np.testing.assert_allclose(b.pose, nodding[:, :6])
    assert np.abs(a.frames.astype(int) - b.frames).mean() > 0.5
    np.save(tmp_path / "short.npy", calm[:15])
    with pytest.raises(ValueError, match="short.npy: 15 frames of pose/blink, but the audio gives 20"):
        pipeline(portrait(), audio, pose_blink=tmp_path / "short.npy")
    with pytest.raises(ValueError, match="needs arrays 'pose'"):
        load_pose_blink({"pose": calm[:, :6]})


def test_max_frames_errors_or_generates_in_chunks(checkpoints, pipeline):
    assert chunk_bounds(50, 20) == [(0, 20), (20, 40), (40, 50)] and chunk_bounds(7, None) == [(0, 7)]
    paths = (checkpoints["motion"], checkpoints["pose_blink"], checkpoints["diffusion"])
    audio = speech(1.0)[0]  # 25 frames
    strict = DawnPipeline.from_checkpoints(*paths, sampler={"num_steps": 2}, max_frames=10)
    with pytest.raises(ValueError, match="25 frames .* more than max_frames=10"):
        strict(portrait(), audio)
    chunked = DawnPipeline.from_checkpoints(
        *paths, sampler={"num_steps": 2}, max_frames=10, on_too_long="chunk"
    )
    video = chunked(portrait(), audio, seed=2)
    assert video.frames.shape[0] == 25 and video.pose.shape == (25, 6)
    # a limit the clip stays within changes nothing
    roomy = DawnPipeline.from_checkpoints(*paths, sampler={"num_steps": 2}, max_frames=25)
    np.testing.assert_array_equal(
        roomy(portrait(), audio, seed=2).frames, pipeline(portrait(), audio, seed=2).frames
    )


def test_window_override_and_reduced_precision(checkpoints):
    paths = (checkpoints["motion"], checkpoints["pose_blink"], checkpoints["diffusion"])
    narrow = DawnPipeline.from_checkpoints(*paths, sampler={"num_steps": 1}, window=2, precision="bf16")
    windows = {m.window for m in narrow.diffusion.modules() if isinstance(m, TemporalAttention)}
    assert windows == {2} and narrow.window == 2
    video = narrow(portrait(), speech(0.4)[0], seed=0)
    assert video.frames.shape == (10, 64, 64, 3) and np.isfinite(video.pose).all()
    with pytest.raises(ValueError, match="precision"):
        DawnPipeline.from_checkpoints(*paths, precision="fp8")
    with pytest.raises(ValueError, match="unknown sampler settings \\['smoothing'\\]"):
        DawnPipeline.from_checkpoints(*paths, sampler={"smoothing": 1.5})


def test_mismatched_audio_features_name_both_checkpoints(checkpoints):
    other = checkpoints["pose_blink_40mels"]
    with pytest.raises(ValueError, match="different audio features") as error:
        DawnPipeline.from_checkpoints(checkpoints["motion"], other, checkpoints["diffusion"])
    message = str(error.value)
    assert str(other) in message and str(checkpoints["diffusion"]) in message
    assert "'n_mels': 40" in message and "'n_mels': 80" in message


def test_checkpoint_lookup_by_run_folder(checkpoints, tmp_path):
    expected = default_checkpoints(tmp_path)
    assert expected["diffusion"] == tmp_path / "stage3b" / "latest" / "checkpoints" / "last.ckpt"
    for age, task in enumerate(("stage3b", "stage3a")):  # stage 3: the more recently written curriculum
        written = tmp_path / task / "latest" / "checkpoints" / "last.ckpt"
        written.parent.mkdir(parents=True)
        written.write_bytes(b"x")
        os.utime(written, (1.7e9 + age, 1.7e9 + age))
        assert default_checkpoints(tmp_path)["diffusion"] == written
    run = tmp_path / "stage2" / "latest" / "checkpoints"
    run.mkdir(parents=True)
    (run / "last.ckpt").symlink_to(checkpoints["pose_blink"])
    pipeline = DawnPipeline.from_run_dirs(
        tmp_path, motion=checkpoints["motion"], diffusion=checkpoints["diffusion"]
    )
    assert pipeline.names["pose_blink"].endswith(str(run / "last.ckpt"))
    with pytest.raises(FileNotFoundError, match="stage-1 checkpoint"):
        DawnPipeline.from_run_dirs(tmp_path)


@pytest.mark.skipif(not (REALDATA / "MANIFEST.md").is_file(), reason="no real test data here")
def test_real_portrait_and_speech(pipeline, tmp_path):
    """A real photo (PNG) and real 44.1 kHz stereo speech (its first 2 s) through the whole pipeline."""
    face = REALDATA / "Real3DPortrait/data/raw/examples/Macron.png"
    voice = REALDATA / "hallo/examples/driving_audios/1.wav"
    audio = load_speech(voice)[: 2 * 16_000]
    video = pipeline(face, audio, seed=0)
    assert video.frames.shape == (50, 64, 64, 3)
    # the portrait is what the stage-1 encoder sees: its resized image is neither blank nor saturated
    image = load_portrait(face, 64)
    assert 0.1 < float(image.mean()) < 0.9 and float(image.std()) > 0.05
    path = video.save(tmp_path / "real.mp4")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 50 and container.streams.audio
    # a .jpg that holds PNG data, and a video's sound track as speech
    assert load_portrait(REALDATA / "MakeItTalk/examples/lab3.jpg", 64).shape == (3, 64, 64)
    track = load_speech(REALDATA / "video-retalking/examples/face/2.mp4")
    assert abs(len(track) / 16_000 - 5.04) < 0.1


def test_overlapping_chunks_cover_every_frame_and_cross_fade_to_one():
    from dawn_lightning.pipeline.chunks import blend_chunks, crossfade_weights, overlapping_chunks

    bounds = overlapping_chunks(250, 100, 10)
    assert bounds == [(0, 100), (90, 190), (180, 250)]
    assert overlapping_chunks(80, 100, 10) == [(0, 80)]
    total = torch.zeros(250)
    for (start, stop), weight in zip(bounds, crossfade_weights(bounds), strict=True):
        total[start:stop] += weight
    torch.testing.assert_close(total, torch.ones(250))
    # two windows that disagree by a step of 1 join with a ramp of 1 / (overlap + 1) per frame, no jump
    pieces = [torch.zeros(1, 3, 100, 2, 2), torch.ones(1, 3, 100, 2, 2), torch.ones(1, 3, 70, 2, 2)]
    joined = blend_chunks(pieces, bounds, 250)
    steps = joined[0, 0, :, 0, 0].diff()
    assert joined.shape == (1, 3, 250, 2, 2) and steps.min() >= 0
    assert steps.max() == pytest.approx(1 / 11) and joined[0, 0, 100:, 0, 0].eq(1).all()
    with pytest.raises(ValueError, match="overlap must be in"):
        overlapping_chunks(250, 100, 50)


def test_chunked_generation_blends_windows_and_one_window_is_unchanged(checkpoints, tmp_path, one_thread):
    write_wav(tmp_path / "speech.wav", speech(1.0)[0])  # 25 frames
    Image.fromarray(portrait((64, 64))).save(tmp_path / "face.png")
    common = {"sampler": {"num_steps": 2}, "device": "cpu"}
    whole = DawnPipeline.from_checkpoints(
        checkpoints["motion"], checkpoints["pose_blink"], checkpoints["diffusion"], **common
    )
    fits = DawnPipeline.from_checkpoints(
        checkpoints["motion"], checkpoints["pose_blink"], checkpoints["diffusion"], max_frames=25, **common
    )
    a, b = (
        whole(tmp_path / "face.png", tmp_path / "speech.wav"),
        fits(tmp_path / "face.png", tmp_path / "speech.wav"),
    )
    np.testing.assert_array_equal(a.frames, b.frames)  # a window that fits is the one-pass generation
    chunked = DawnPipeline.from_checkpoints(
        checkpoints["motion"],
        checkpoints["pose_blink"],
        checkpoints["diffusion"],
        max_frames=12,
        on_too_long="chunk",
        chunk_overlap=4,
        **common,
    )
    assert chunked._windows(25) == [(0, 12), (8, 20), (16, 25)]
    video = chunked(tmp_path / "face.png", tmp_path / "speech.wav")
    assert (
        video.frames.shape == (25, 64, 64, 3) and video.pose.shape == (25, 6) and video.blink.shape == (25, 2)
    )


def test_the_pipeline_cross_fades_its_stage3_windows_before_rendering(checkpoints, tmp_path, one_thread):
    """Stage 3 stubbed to give each window its own index as motion: what stage 1 renders is each index inside
    its window and a linear ramp over every overlap: the pipeline blends, not only `blend_chunks`."""
    write_wav(tmp_path / "speech.wav", speech(1.0)[0])  # 25 frames
    Image.fromarray(portrait((64, 64))).save(tmp_path / "face.png")
    pipeline = DawnPipeline.from_checkpoints(
        checkpoints["motion"],
        checkpoints["pose_blink"],
        checkpoints["diffusion"],
        max_frames=12,
        on_too_long="chunk",
        chunk_overlap=4,
        device="cpu",
    )
    lengths, rendered = [], {}

    def window_index(context, audio, *rest):
        lengths.append(audio.shape[1])
        return torch.full((1, 3, audio.shape[1], 16, 16), float(len(lengths) - 1))

    render = pipeline._render

    def keep(source, x0):
        rendered["x0"] = x0
        return render(source, x0)

    pipeline._motion, pipeline._render = window_index, keep
    video = pipeline(tmp_path / "face.png", tmp_path / "speech.wav")
    assert lengths == [12, 12, 9] and len(video) == 25
    ramp = torch.tensor([0.2, 0.4, 0.6, 0.8])  # 4 shared frames: weights 1/5 .. 4/5 for the later window
    expected = torch.cat([torch.zeros(8), ramp, torch.ones(4), 1 + ramp, torch.full((5,), 2.0)])
    torch.testing.assert_close(rendered["x0"][0, 0, :, 0, 0], expected)
