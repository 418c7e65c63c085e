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
