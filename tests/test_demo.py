"""`dawn-demo` reuses finished steps and writes its video, contact sheet, metrics and report."""

import json
import shutil

import av

from dawn_lightning.cli import demo
from tests.pipeline_fixtures import tiny_checkpoints


def test_demo_reuses_checkpoints_and_writes_its_report(synthetic, tmp_path, one_thread):
    checkpoints = tiny_checkpoints(tmp_path / "tiny")
    experiments = tmp_path / "experiments"
    for task, key in (
        ("stage1", "motion"),
        ("stage2", "pose_blink"),
        ("stage3a", "diffusion"),
    ):
        target = experiments / task / "latest" / "checkpoints" / "last.ckpt"
        target.parent.mkdir(parents=True)
        shutil.copy(checkpoints[key], target)
    out = tmp_path / "demo"
    demo.main(["--store", str(synthetic.root), "--experiments", str(experiments), "--out", str(out)])

    timings = json.loads((out / "timings.json").read_text())
    assert all(entry["reused"] for name, entry in timings.items() if not name.startswith("generate"))
    metrics = json.loads((out / "metrics.json").read_text())
    clip = synthetic.split("test")[0]
    assert metrics["clip"] == clip.clip_id and metrics["frames"] == clip.num_frames
    assert -1 <= metrics["mouth_audio_corr_generated"] <= 1 and metrics["mouth_audio_corr_truth"] > 0.6
    with av.open(str(out / "demo.mp4")) as container:
        assert container.streams.video[0].frames == clip.num_frames and container.streams.audio
    assert (out / "contact_sheet.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert clip.clip_id in report and "lip-sync proxy" in report and "stage 3 A" in report
    assert metrics["stage3_checkpoint"].endswith(
        str(experiments / "stage3a" / "latest" / "checkpoints" / "last.ckpt")
    )
    assert -1 <= metrics["mouth_audio_corr_stage1"] <= 1 and metrics["frame_change_stage1"] >= 0
    # the goals: every test clip (2 here, up to 4) with 2 seeds, each figure beside its goal
    clips = [c.clip_id for c in synthetic.split("test")][: demo.CLIPS]
    assert [(r["clip"], r["seed"]) for r in metrics["runs"]] == [(c, s) for c in clips for s in (0, 1)]
    assert set(metrics["goals"]) == set(demo.GOALS)
    truth_blinks = sum(r["blinks_truth"] for r in metrics["runs"]) / sum(
        r["seconds"] for r in metrics["runs"]
    )
    assert metrics["goals"]["blinks"]["truth"] == round(truth_blinks, 4)
    assert metrics["goals"]["mouth_motion"]["truth"] > 0 and "mouth darkness std" in report
    # the sheet: 4 rows of 10 tiles (truth, generated, and both mouths close up)
    from PIL import Image

    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size == (10 * (64 + 2) + 2, 4 * (64 + 12 + 2) + 2)


def test_goals_are_judged_against_the_truth():
    run = {"seconds": 10.0, "blinks_generated": 5, "blinks_truth": 4}
    figures = {
        "mouth_motion": (0.03, 0.04),
        "lip_sync": (0.85, 0.9),
        "head": (2.0, 3.0),
        "frame_change": (0.5, 0.6),
    }
    for name, (g, t) in figures.items():
        run |= {f"{name}_generated": g, f"{name}_truth": t}
    verdicts = demo.judge([run])
    assert {k: v["met"] for k, v in verdicts.items()} == {
        "mouth_motion": True,  # 0.75x >= 0.6x
        "lip_sync": True,
        "blinks": True,  # 0.5 against 0.4 per second: 25 % off
        "head": True,  # 33 % off
        "frame_change": True,  # 17 % off
    }
    run |= {"mouth_motion_generated": 0.02, "blinks_generated": 8, "head_generated": 1.0}
    verdicts = demo.judge([run])
    assert (
        not verdicts["mouth_motion"]["met"] and not verdicts["blinks"]["met"] and not verdicts["head"]["met"]
    )
