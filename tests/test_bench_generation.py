"""`dawn-bench generate`: the end-to-end generation benchmark on the tiny size (in this process; the CLI
isolates each configuration), and its model configs, inputs and report."""

import numpy as np
import pytest
import torch

from dawn_lightning import FPS, SAMPLE_RATE
from dawn_lightning.benchmarks import generation
from dawn_lightning.checkpoints import load_motion_diffusion, load_pose_blink_generator


def test_network_configs_follow_the_model_configs():
    tiny, paper = generation.network_configs(64), generation.network_configs(128)
    assert (
        tiny["motion"]["region"]["max_features"] == 128 and paper["motion"]["region"]["max_features"] == 1024
    )
    assert tiny["pose_blink"]["audio_latent_dim"] == 64 and paper["pose_blink"]["audio_latent_dim"] == 256
    assert tiny["pose_blink"]["dropout"] == 0.0 and "audio_dim" not in tiny["pose_blink"]
    assert tiny["diffusion"]["unet"]["dim"] == 32 and paper["diffusion"]["unet"]["dim"] == 64
    assert tiny["diffusion"]["unet"]["window"] == paper["diffusion"]["unet"]["window"] == 40
    with pytest.raises(ValueError, match="size must be one of"):
        generation.network_configs(96)


def test_inputs():
    speech = generation.speech_like(1.5)
    assert speech.dtype == np.float32 and speech.shape == (int(1.5 * SAMPLE_RATE),)
    assert 0.3 < np.abs(speech).max() <= 1 and np.isfinite(speech).all()
    assert np.array_equal(speech, generation.speech_like(1.5)) and not np.array_equal(
        speech, generation.speech_like(1.5, seed=1)
    )
    portrait = generation.synthetic_portrait(64)
    assert portrait.shape == (64, 64, 3) and portrait.dtype == np.uint8 and portrait.std() > 10


def test_tiny_run(tmp_path):
    threads = torch.get_num_threads()
    results = generation.generation(
        sizes=(64,), seconds=(1, 2), steps=2, threads=1, warmup_seconds=0.2, isolate=False, log=lambda _: None
    )
    assert torch.get_num_threads() == threads
    rows = results["rows"]
    assert [(r["size"], r["seconds"]) for r in rows] == [(64, 1), (64, 2)]
    for row in rows:
        assert row["frames"] == row["seconds"] * FPS and row["steps"] == 2 and row["window"] == 40
        assert set(row["phases"]) == set(generation.PHASES)
        assert all(seconds > 0 for seconds in row["phases"].values()), row["phases"]
        assert row["total_s"] >= sum(row["phases"].values()) - 0.01
        assert row["s_per_video_s"] == pytest.approx(row["total_s"] / row["seconds"])
        assert row["frames_finite"] and row["mp4_bytes"] > 0 and row["process_peak_mib"] > 0
    (check,) = results["linearity"]
    assert check["seconds"] == [1, 2] and check["frames_ratio"] == 2
    table = generation.markdown(results)
    assert table.count("| 64 px |") == 3 and "1024 wide" in table


def test_checkpoints_load(tmp_path):
    paths = generation.write_checkpoints(64, tmp_path, steps=7)
    net, record = load_motion_diffusion(paths["diffusion"])
    assert record["sampler"]["num_steps"] == 7 and record["frame_size"] == 64
    assert net.config["audio_dim"] == 80 and net.config["z_channels"] == 128
    pbnet, pb_record = load_pose_blink_generator(paths["pose_blink"])
    assert pb_record["signals"] == "both" and pbnet.config["state_dim"] == 8


def test_linearity_verdict():
    def row(seconds, peak):
        frames = seconds * FPS
        return {
            "size": 128,
            "seconds": seconds,
            "frames": frames,
            "video_s": seconds,
            "total_s": 2.0 * seconds,
            "peak_mib": peak,
            "process_peak_mib": 1000 + peak,
        }

    (ok,) = generation.linearity([row(10, 500.0), row(60, 3000.0)])
    assert ok["linear"] and ok["frames_ratio"] == 6 and ok["time_ratio"] == 6
    assert ok["mib_per_video_s"] == pytest.approx(50.0)
    (bad,) = generation.linearity([row(10, 500.0), row(60, 4000.0)])
    assert not bad["linear"] and bad["memory_ratio"] == 8
    note = {"size": 128, "seconds": 60, "frames": 1500, "note": "skipped"}
    assert generation.linearity([row(10, 500.0), note]) == []
