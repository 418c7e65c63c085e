"""`dawn-generate` end to end on tiny random checkpoints: the mp4 (frames, fps, audio track), bad inputs
(a clear error naming the file, nothing written), long input in one pass, pose/blink files, max_frames."""

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from dawn_lightning.cli.generate import generate
from dawn_lightning.config import compose
from dawn_lightning.pipeline import DawnPipeline
from tests.pipeline_fixtures import (
    BAD_AUDIO,
    bad_audio,
    generate_config,
    portrait,
    speech,
    write_wav,
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A square RGB portrait, a 1-s 16 kHz mono wav."""
    root = tmp_path_factory.mktemp("inputs")
    Image.fromarray(portrait((72, 72))).save(root / "face.png")
    write_wav(root / "speech.wav", speech(1.0)[0])
    return root


def config(checkpoints, **overrides):
    # synthetic portraits: no face backend even when DAWN_FACE_MODEL is set
    return generate_config(checkpoints, "face.model_path=null", **overrides)


def probe(path: Path) -> dict:
    """Frames (decoded), fps, and the audio track's duration of an mp4."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video)])
        fps = float(video.average_rate)
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(audio))
        rate = audio.rate
    return {"frames": frames, "fps": fps, "audio_seconds": samples / rate}


def test_config_composes_with_default_checkpoints():
    cfg = compose("generate")
    assert cfg.checkpoints.motion.endswith("experiments/stage1/latest/checkpoints/last.ckpt")
    assert cfg.checkpoints.diffusion is None  # the newer of stage3b's and stage3a's, found when generating
    assert cfg.sampler.num_steps is None and cfg.pose_blink == "generated" and cfg.max_frames is None


def test_stage3_defaults_to_curriculum_a_when_b_was_not_trained(checkpoints, tmp_path):
    """`make demo` trains curriculum A only: generation finds its checkpoint without being told."""
    stage3a = tmp_path / "stage3a" / "latest" / "checkpoints" / "last.ckpt"
    stage3a.parent.mkdir(parents=True)
    stage3a.symlink_to(checkpoints["diffusion"])
    cfg = generate_config(
        checkpoints, "face.model_path=null", f"paths.experiments_dir={tmp_path}", "checkpoints.diffusion=null"
    )
    assert DawnPipeline.from_config(cfg).names["diffusion"].endswith(str(stage3a))


def test_generates_an_mp4_whose_length_follows_the_audio(checkpoints, inputs, tmp_path, one_thread):
    out = tmp_path / "nested" / "talk.mp4"
    generate(config(checkpoints, portrait=inputs / "face.png", speech=inputs / "speech.wav", out=out))
    first = probe(out)
    assert first["frames"].shape == (25, 64, 64, 3) and first["fps"] == 25
    assert abs(first["audio_seconds"] - 1.0) < 0.05
    assert not list(out.parent.glob(".*tmp"))  # the atomic write left no temporary file
    again = tmp_path / "again.mp4"
    generate(config(checkpoints, portrait=inputs / "face.png", speech=inputs / "speech.wav", out=again))
    np.testing.assert_array_equal(probe(again)["frames"], first["frames"])
    other = tmp_path / "other.mp4"
    generate(
        config(checkpoints, portrait=inputs / "face.png", speech=inputs / "speech.wav", out=other, seed=9)
    )
    assert np.abs(probe(other)["frames"].astype(int) - first["frames"]).mean() > 0.5


def test_long_stereo_44k_input_and_rgba_non_square_portrait_in_one_pass(checkpoints, tmp_path, one_thread):
    """10 s of 44.1 kHz stereo (resampled to 16 kHz mono) and a transparent 90 x 70 portrait: 250 frames."""
    write_wav(tmp_path / "long.wav", speech(10.0, 44_100, 2), 44_100)
    Image.fromarray(portrait((90, 70), channels=4)).save(tmp_path / "rgba.png")
    out = tmp_path / "long.mp4"
    overrides = {"portrait": tmp_path / "rgba.png", "speech": tmp_path / "long.wav", "out": out}
    generate(config(checkpoints, **overrides, **{"framing.mode": "pad", "framing.background": "black"}))
    result = probe(out)
    assert result["frames"].shape == (250, 64, 64, 3) and result["fps"] == 25
    assert abs(result["audio_seconds"] - 10.0) < 0.05


@pytest.mark.parametrize("kind", [*BAD_AUDIO, "portrait"])
def test_bad_inputs_fail_naming_the_file_and_write_nothing(checkpoints, inputs, tmp_path, kind):
    audio, portrait_path = inputs / "speech.wav", inputs / "face.png"
    if kind == "portrait":
        portrait_path = tmp_path / "face.jpg"
        portrait_path.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
        culprit, message = portrait_path, "cannot read the image"
    else:
        audio, message = bad_audio(tmp_path, kind)
        culprit = audio
    out = tmp_path / "out" / "talk.mp4"
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        generate(config(checkpoints, portrait=portrait_path, speech=audio, out=out))
    assert str(culprit) in str(error.value) and message in str(error.value)
    assert not out.exists() and not out.parent.exists()


def test_pose_blink_file_and_max_frames(checkpoints, inputs, tmp_path, one_thread):
    base = {"portrait": inputs / "face.png", "speech": inputs / "speech.wav"}
    states = np.zeros((25, 8), np.float32) + [2, -1, 0, 1, 0, 0, 0.3, 0.3]
    np.save(tmp_path / "pose.npy", states)
    generate(config(checkpoints, **base, out=tmp_path / "posed.mp4", pose_blink=tmp_path / "pose.npy"))
    assert len(probe(tmp_path / "posed.mp4")["frames"]) == 25
    np.save(tmp_path / "short.npy", states[:24])
    with pytest.raises(ValueError, match="short.npy: 24 frames of pose/blink, but the audio gives 25"):
        generate(config(checkpoints, **base, out=tmp_path / "x.mp4", pose_blink=tmp_path / "short.npy"))
    with pytest.raises(ValueError, match="more than max_frames=10"):
        generate(config(checkpoints, **base, out=tmp_path / "x.mp4", max_frames=10))
    assert not (tmp_path / "x.mp4").exists()
    generate(config(checkpoints, **base, out=tmp_path / "chunked.mp4", max_frames=10, on_too_long="chunk"))
    assert len(probe(tmp_path / "chunked.mp4")["frames"]) == 25


def test_console_script_reports_a_bad_input_in_one_line(inputs, tmp_path):
    """The installed `dawn-generate`: a clean error message and exit status 1, no traceback, no output."""
    script = Path(sys.executable).parent / "dawn-generate"
    out = tmp_path / "talk.mp4"
    missing = tmp_path / "missing.wav"
    result = subprocess.run(
        [str(script), f"portrait={inputs / 'face.png'}", f"speech={missing}", f"out={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert f"dawn-generate: error: {missing}: no such audio file" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_missing_settings_show_the_usage(inputs):
    with pytest.raises(ValueError, match="portrait=... is required: dawn-generate portrait="):
        generate(compose("generate", [f"speech={inputs / 'speech.wav'}", "out=x.mp4"]))


def run_script(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "dawn-generate"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300)


def broken_checkpoints(checkpoints, folder: Path) -> dict[str, Path]:
    """A stage-3 checkpoint cut in half, and one that holds a pickled Python object besides its tensors."""
    import argparse

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    data = checkpoints["diffusion"].read_bytes()
    (folder / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    payload = torch.load(checkpoints["diffusion"], weights_only=True) | {"opt": argparse.Namespace(lr=1)}
    torch.save(payload, folder / "pickled.ckpt")
    return {"truncated": folder / "truncated.ckpt", "pickled": folder / "pickled.ckpt"}


@pytest.mark.parametrize(
    "kind, message",
    [
        ("truncated", "truncated or not a checkpoint"),
        ("pickled", "holds pickled Python objects (argparse.Namespace)"),
    ],
)
def test_a_broken_checkpoint_is_one_line_naming_the_file(checkpoints, inputs, tmp_path, kind, message):
    broken = broken_checkpoints(checkpoints, tmp_path / "ckpt")[kind]
    out = tmp_path / "talk.mp4"
    result = run_script(
        f"portrait={inputs / 'face.png'}",
        f"speech={inputs / 'speech.wav'}",
        f"out={out}",
        f"checkpoints.motion={checkpoints['motion']}",
        f"checkpoints.pose_blink={checkpoints['pose_blink']}",
        f"checkpoints.diffusion={broken}",
        "face.model_path=null",
        "device=cpu",
    )
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert result.returncode == 1 and len(errors) == 1
    assert errors[0].startswith(f"dawn-generate: error: {broken}: ")
    assert message in errors[0] and "Traceback" not in result.stderr
    assert "weights_only" not in result.stderr  # never advises an unsafe load
    assert not out.exists()


def test_out_naming_a_folder_is_refused_before_any_work(checkpoints, inputs, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the checkpoints were loaded")

    monkeypatch.setattr(DawnPipeline, "from_config", no_work)
    with pytest.raises(ValueError, match=r"out=.*: is a folder; name the mp4 to write"):
        generate(
            config(checkpoints, portrait=inputs / "face.png", speech=inputs / "speech.wav", out=tmp_path)
        )
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"file is a file, not a folder"):
        generate(
            config(
                checkpoints,
                portrait=inputs / "face.png",
                speech=inputs / "speech.wav",
                out=tmp_path / "file" / "a.mp4",
            )
        )


def test_an_existing_out_is_replaced_with_a_word_or_refused(
    checkpoints, inputs, tmp_path, caplog, one_thread
):
    out = tmp_path / "talk.mp4"
    out.write_bytes(b"an earlier video")
    settings = {"portrait": inputs / "face.png", "speech": inputs / "speech.wav", "out": out}
    with pytest.raises(ValueError, match=r"talk\.mp4: exists \(overwrite=false\)"):
        generate(config(checkpoints, **settings, overwrite="false"))
    assert out.read_bytes() == b"an earlier video"
    with caplog.at_level("WARNING", logger="dawn_lightning.generate"):
        generate(config(checkpoints, **settings))
    assert any("exists: overwriting it" in r.getMessage() for r in caplog.records)
    assert len(probe(out)["frames"]) == 25
