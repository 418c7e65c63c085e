"""`dawn-evaluate` end to end on tiny untrained checkpoints and a small synthetic store: generation, every
metric that needs no official weights, the report files, the skip lines, and the folder mode."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from dawn_lightning.checkpoints import SYNCNET, net_state, save
from dawn_lightning.config import compose
from dawn_lightning.evaluation import evaluate
from dawn_lightning.models.syncnet import CompactSyncNet
from tests.pipeline_fixtures import tiny_checkpoints


def settings(overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose("evaluate", overrides), resolve=True)


@pytest.mark.slow
def test_evaluate_generates_scores_and_reports(synthetic, tmp_path, one_thread):
    paths = tiny_checkpoints(tmp_path / "ckpt")
    net = CompactSyncNet(dim=8, width=4, crop_size=16)
    syncnet = tmp_path / "syncnet.ckpt"
    save(syncnet, SYNCNET, {"config": net.config}, net_state(net))
    out = tmp_path / "eval"
    common = [
        f"data.store_dir={synthetic.root}",
        "metrics.fid.degradation_frames=10",
        "metrics.fid.random_dim=8",
        "metrics.fvd.random_dim=4",
        "metrics.fvd.clip_lengths=[16]",
        "device=cpu",
    ]
    record = evaluate(
        settings(
            [
                f"run={tmp_path}",
                f"checkpoints.motion={paths['motion']}",
                f"checkpoints.pose_blink={paths['pose_blink']}",
                f"checkpoints.diffusion={paths['diffusion']}",
                f"metrics.lse.weights={syncnet}",
                f"out={out}",
                *common,
            ]
        )
    )
    written = json.loads((out / "metrics.json").read_text())
    assert written["clips"] == 2 and written["split"] == "test"
    metrics = written["metrics"]
    for key in (
        "fid",
        "fvd16",
        "ssim",
        "psnr",
        "lpips",
        "lse_c_truth",
        "lse_d_generated",
        "lse_c_control",
        "in_sync_generated",
        "degradation_rate_10",
        "blinks_per_s_generated",
        "pose_diversity_truth",
        "beat_align_generated",
        "seconds_per_output_second",
        "peak_memory_mib",
    ):
        assert key in metrics, key
    assert "random-feature" in metrics["fid"]["label"] and "random-feature" in metrics["fvd16"]["label"]
    assert metrics["seconds_per_output_second"]["value"] > 0
    report = (out / "report.md").read_text()
    assert "| SSIM |" in report and "metrics.csim.weights is not set" in report
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (out / "videos").glob("*.mp4")) == [
        c.clip_id + ".mp4" for c in synthetic.split("test")
    ]
    assert record["metrics"] == metrics

    # folder mode: the generated videos against themselves, LSE skipped without weights
    folders = [f"generated_dir={out / 'videos'}", f"real_dir={out / 'videos'}", f"out={tmp_path / 'f'}"]
    again = evaluate(settings([*folders, "metrics.lse.weights=null", *common]))
    assert abs(again["metrics"]["fid"]["value"]) < 1e-6
    assert again["metrics"]["ssim"]["value"] == pytest.approx(1.0)
    assert any(line.startswith("LSE-C/LSE-D skipped: metrics.lse.weights") for line in again["notes"])
    assert "lse_c_generated" not in again["metrics"]


def test_evaluate_folder_mode_needs_both_folders(tmp_path):
    with pytest.raises(ValueError, match="generated_dir and real_dir go together"):
        evaluate(settings([f"generated_dir={tmp_path}"]))


@pytest.mark.slow
def test_two_processes_give_the_metrics_of_one(synthetic, checkpoints, tmp_path, one_thread):
    """processes=2 (CPU, gloo): the clips are dealt to the ranks and the metric states reduced, so
    metrics.json holds one process's numbers (timings and memory aside). Each rank runs one thread on this
    2-core machine, so the single process does too (float kernels differ with the thread count)."""
    net = CompactSyncNet(dim=8, width=4, crop_size=16)
    save(tmp_path / "syncnet.ckpt", SYNCNET, {"config": net.config}, net_state(net))
    common = [
        f"data.store_dir={synthetic.root}",
        *(f"checkpoints.{k}={checkpoints[k]}" for k in ("motion", "pose_blink", "diffusion")),
        f"metrics.lse.weights={tmp_path / 'syncnet.ckpt'}",
        "metrics.fid.degradation_frames=10",
        "metrics.fid.random_dim=8",
        "metrics.fvd.random_dim=4",
        "metrics.fvd.clip_lengths=[16]",
        "split=val",  # 2 clips: one a rank
        "save_videos=false",
        "device=cpu",
    ]
    records = {}
    for processes in (1, 2):
        out = tmp_path / f"out{processes}"
        evaluate(settings([*common, f"out={out}", f"processes={processes}"]))
        records[processes] = json.loads((out / "metrics.json").read_text())
    one, two = records[1]["metrics"], records[2]["metrics"]
    assert records[2]["clips"] == 2 and set(one) == set(two)
    for key, entry in one.items():
        if key not in ("seconds_per_output_second", "peak_memory_mib"):
            assert two[key]["value"] == pytest.approx(entry["value"], rel=1e-6, abs=1e-9), key
    with pytest.raises(ValueError, match=r"process \d: processes=3, but the split has 2 clips"):
        evaluate(settings([*common, f"out={tmp_path / 'x'}", "processes=3"]))


def test_the_hdtf_paper_protocol_composes_and_needs_every_published_weight(monkeypatch):
    from dawn_lightning import evaluation
    from dawn_lightning.config import CONF_DIR
    from dawn_lightning.data.preprocess.layout import assign_splits

    cfg = settings(["evaluate=hdtf_paper"])
    assert (cfg["frames"], cfg["split"], cfg["data"]["store_dir"].endswith("hdtf128")) == (200, "test", True)
    assert cfg["metrics"]["lse"]["kind"] == "syncnet_v2" and cfg["metrics"]["lse"]["face_crop"]
    assert cfg["metrics"]["fvd"]["clip_lengths"] == [16, 32]
    monkeypatch.setattr(evaluation, "build_pipeline", lambda cfg: pytest.fail("loaded the checkpoints"))
    with pytest.raises(
        ValueError, match="metrics.fid.weights .*metrics.fvd.weights .*metrics.lse.weights .*csim"
    ):
        evaluate(cfg)
    speakers = (CONF_DIR / "evaluate" / "hdtf_test_speakers.txt").read_text().split()
    assert len(speakers) == len(set(speakers)) == 41 and "WRA_MarcoRubio" in speakers
    lists = {"val": None, "test": str(CONF_DIR / "evaluate" / "hdtf_test_speakers.txt")}
    splits = assign_splits([*speakers, "WDA_Someone", "WRA_Other"], 0, 0.0, 0.0, lists)
    assert {s for s, split in splits.items() if split == "test"} == set(speakers)
